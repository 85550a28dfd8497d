"""xprompt-jax: prompt tuning, XPrompt and EPT on frozen T5 models (T5X-compatible) in JAX/Flax.

Entry points: ``xprompt_jax.t5_import.load_t5_checkpoint`` (read any T5 checkpoint),
``xprompt_jax.models.t5.T5`` (the network), ``xprompt_jax.models.decoding`` (scoring, greedy decoding)
and the ``xprompt-jax`` command (``xprompt_jax.cli.main``).
"""

__version__ = "0.1.0"
