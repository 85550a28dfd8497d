"""Readers for the T5 checkpoints researchers already have: T5X (msgpack + tensorstore, or Orbax)
and Hugging Face folders. ``load_t5_checkpoint`` (``loader.py``) picks the right one."""
from xprompt_jax.t5_import.loader import load_t5_checkpoint, resolve_checkpoint  # noqa: F401
