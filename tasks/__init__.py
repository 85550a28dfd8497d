"""seqio task registrations (SuperGLUE, GLUE, few-shot splits, the built-in demo family).

Importing ``tasks.<module>`` registers its tasks. The training side imports only the TF-free modules
(``tasks.errors``, ``tasks.specs``, ``tasks.fingerprint``): data reaches training hosts as NumPy caches, so
nothing that trains needs TensorFlow. This package imports nothing from ``xprompt_jax``.

TensorFlow's C++ start-up logging (``E0000 ... failed call to cuInit`` on a CPU machine, CPU feature notes)
reads like a failure on a data command; it is silenced here, before any task module imports TensorFlow.
``setdefault``: a value the user set wins.
"""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # tokenisation only: no numerics to tune
