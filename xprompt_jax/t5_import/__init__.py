"""Readers for the T5 checkpoints researchers already have: T5X (msgpack + tensorstore, or Orbax)
and Hugging Face folders. ``xprompt_jax.checkpoints.load_t5_checkpoint`` picks the right one."""
