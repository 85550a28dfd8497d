"""Kind 'prompt': Lester et al.'s soft prompt, the m x e matrix itself is the parameter."""
from __future__ import annotations

import dataclasses

from xprompt_jax.prompts.kinds.base import DEFAULT_KIND, PromptSpecBase, register_kind
from xprompt_jax.prompts.modules import Prompt


@register_kind(DEFAULT_KIND)
@dataclasses.dataclass(frozen=True)
class PlainPromptSpec(PromptSpecBase):
    """The prompt matrix; only the common fields."""

    def build_module(self, width, init_fn):
        return Prompt(**self.module_args(width, init_fn))
