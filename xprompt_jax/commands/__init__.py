"""Commands that are a short file of calls to the assembly point (``xprompt_jax/assembly.py``).

``train`` is ``run/loop.py`` and ``xprompt`` is ``xprompt/stages.py`` (drivers with a loop of their own);
the CLI's command table (``cli/gin_configurables.ENTRY_POINTS``) names all of them.
"""
