"""What every prompt kind shares: the spec base class (the fields of every kind, their checks, the stored
dict) and the registry that names the kinds.

A kind is a frozen dataclass deriving from ``PromptSpecBase``, registered with ``@register_kind(name)``:
it adds its own fields, checks them in ``check()`` and builds its Flax prompt module in
``build_module()``. ``make_spec`` (``PromptSpec`` in ``prompted.py`` and in gin) picks the class by
``kind``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Dict, Optional, Type

from flax import linen as nn

from xprompt_jax.errors import ConfigError
from xprompt_jax.prompts import combine as combine_lib

DEFAULT_KIND = "prompt"   # its stored dict has no 'kind': it predates the other kinds (older runs resume)
INIT_KINDS = ("uniform", "sampled_vocabulary", "class_labels", "file")
KINDS: Dict[str, Type["PromptSpecBase"]] = {}


@dataclasses.dataclass(frozen=True)
class PromptSpecBase:
    """What prompt a run trains: the fields of every kind. Defaults are Lester et al.'s (100 tokens,
    sampled vocabulary).

    ``init``: 'uniform' (U[-init_scale, init_scale]), 'sampled_vocabulary' (rows of the frozen embedding
    among the ``population_size`` most common pieces), 'class_labels' (mean embedding of each label
    string, remaining rows sampled) or 'file' (``init_file``: a ``.npy``, or a run's ``MODEL_DIR`` whose
    exported prompt is reused). A reparameterised kind's ``init`` starts its network's input embeddings.
    ``pieces`` is XPrompt's k (pieces per prompt token); it must divide the model width. ``combine``:
    'prefix', 'after_first_token' or 'before_eos'. Whatever the kind, what is exported and evaluated is
    the m x e output of its module.
    """
    kind: ClassVar[str] = ""   # set by register_kind
    length: int = 100
    init: str = "sampled_vocabulary"
    init_scale: float = 0.5
    population_size: int = 5000
    init_file: Optional[str] = None
    pieces: int = 16
    combine: str = "prefix"

    def __post_init__(self):
        self.check()
        if self.length < 1:
            raise ConfigError(f"PromptSpec.length must be at least 1, got {self.length}")
        if self.init not in INIT_KINDS:
            raise ConfigError(f"unknown PromptSpec.init {self.init!r}; choose one of {list(INIT_KINDS)}")
        if self.init == "file" and not self.init_file:
            raise ConfigError("PromptSpec.init='file' needs PromptSpec.init_file (a .npy or a run's MODEL_DIR)")
        combine_lib.get_combine(self.combine)

    def check(self) -> None:
        """The kind's own checks (those that need the model width wait for ``build_module``)."""

    def build_module(self, width: int, init_fn: Callable) -> nn.Module:  # pragma: no cover - abstract
        """The Flax prompt module of this kind, ``width`` wide, its embeddings started by ``init_fn``."""
        raise NotImplementedError

    def module_args(self, width: int, init_fn: Callable) -> dict:
        """The arguments every prompt module takes. Pieces matter only to XPrompt, which checks that k divides
        the width before it runs; any other run with a k that does not divide it masks whole tokens (k = 1)."""
        pieces = self.pieces if width % self.pieces == 0 else 1
        return dict(length=self.length, width=width, pieces=pieces, init_fn=init_fn)

    @classmethod
    def common_fields(cls) -> tuple:
        return tuple(f.name for f in dataclasses.fields(PromptSpecBase))

    @classmethod
    def own_fields(cls) -> tuple:
        """The fields this kind adds to the common ones."""
        common = cls.common_fields()
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in common)

    def to_dict(self) -> dict:
        """run_config.json's ``prompt``; ``PromptSpec(**d)`` rebuilds the spec. The common fields, then
        ``kind`` and the kind's own fields; the plain prompt's dict is what it was before other kinds
        existed (no ``kind``), so older runs resume."""
        values = {name: getattr(self, name) for name in self.common_fields()}
        if self.kind != DEFAULT_KIND:
            values["kind"] = self.kind
            values.update((name, getattr(self, name)) for name in self.own_fields())
        return values


def register_kind(name: str):
    """Class decorator: ``@register_kind('ept')`` over a ``PromptSpecBase`` dataclass makes ``make_spec``
    (gin: ``PromptSpec.kind = 'ept'``) build it."""
    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, PromptSpecBase)):
            raise TypeError(f"register_kind({name!r}) needs a PromptSpecBase subclass, got {cls!r}")
        if name in KINDS and KINDS[name] is not cls:
            raise ValueError(f"prompt kind {name!r} is already registered by {KINDS[name].__name__}")
        cls.kind = name
        KINDS[name] = cls
        return cls
    return register


_NO_DEFAULT = object()


def _field_default(cls, name: str):
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default
    return _NO_DEFAULT


def make_spec(kind: str = DEFAULT_KIND, **fields) -> PromptSpecBase:
    """The spec of prompt kind ``kind`` with ``fields``.

    Every field of every kind is accepted (gin binds them all under one name, ``PromptSpec``); one that
    the chosen kind does not read must be at its default, else a ConfigError names the field and kind.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown PromptSpec.kind {kind!r}; choose one of {sorted(KINDS)}")
    cls = KINDS[kind]
    own = {f.name for f in dataclasses.fields(cls)}
    kept = {}
    for name, value in fields.items():
        if name in own:
            kept[name] = value
            continue
        readers = {k: d for k, c in KINDS.items() if (d := _field_default(c, name)) is not _NO_DEFAULT}
        if not readers:
            raise ConfigError(f"unknown PromptSpec field {name!r}; kind {kind!r} takes {sorted(own)}")
        if not any(value is d or value == d for d in readers.values()):
            raise ConfigError(f"PromptSpec.{name} = {value!r} does not apply to kind {kind!r} (only to "
                              f"{sorted(readers)}); unset it or choose one of those kinds")
    return cls(**kept)
