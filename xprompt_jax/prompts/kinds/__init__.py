"""Prompt kinds: one spec class per kind, one file each, and the registry that names them.

``base.py`` holds the common fields and checks, ``register_kind`` and ``make_spec``. Every other module
of this package is one kind and is imported here, so a new kind is one new file: a frozen dataclass
deriving from ``PromptSpecBase`` with its fields, ``check()`` and ``build_module()``, decorated
``@register_kind('name')``.
"""
import importlib
import pkgutil

from xprompt_jax.prompts.kinds.base import (
    DEFAULT_KIND,
    INIT_KINDS,
    KINDS,
    PromptSpecBase,
    make_spec,
    register_kind,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DEFAULT_KIND", "INIT_KINDS", "KINDS", "PromptSpecBase", "make_spec", "register_kind"]
