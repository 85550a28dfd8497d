"""Soft prompts: the trainable matrix a frozen T5 sees in front of (or among) its input embeddings.

``initializers`` makes the starting values, ``masks`` the token and piece masks XPrompt prunes,
``modules`` the Flax modules that produce the m x e prompt, ``combine`` where it goes in the input,
``kinds`` one spec class per prompt kind (fields, checks, module) and the registry that names them.
"""
