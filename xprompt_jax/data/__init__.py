"""Task data for training hosts: NumPy caches of tokenised task splits.

``cache`` reads (and atomically writes) them with NumPy alone; ``write_cache`` makes them from a seqio task
and is the only module here that imports seqio/TensorFlow. Nothing is imported eagerly, so importing this
package costs nothing.
"""
