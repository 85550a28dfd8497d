"""seqio task registrations (SuperGLUE, GLUE, few-shot splits, the built-in demo family).

Importing ``tasks.<module>`` registers its tasks. The training side never imports this package: data
reaches training hosts as NumPy caches, so nothing that trains needs TensorFlow.
"""
