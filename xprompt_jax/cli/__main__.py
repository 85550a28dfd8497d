"""``python -m xprompt_jax.cli ...``: the same as the ``xprompt-jax`` command (launch scripts use it)."""
import sys

from xprompt_jax.cli.main import main

sys.exit(main())
