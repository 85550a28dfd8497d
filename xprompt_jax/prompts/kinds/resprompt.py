"""Kind 'resprompt': residual prompt tuning, p + LayerNorm(up(ReLU(down(p)))) with a ``hidden``-unit
bottleneck (default 400); one MLP shared by the tokens, or one per token with ``resprompt_separate``."""
from __future__ import annotations

import dataclasses
from typing import Optional

from xprompt_jax.errors import ConfigError
from xprompt_jax.prompts import reparameterized as rp
from xprompt_jax.prompts.kinds.base import PromptSpecBase, register_kind


@register_kind("resprompt")
@dataclasses.dataclass(frozen=True)
class ResPromptSpec(PromptSpecBase):
    hidden: Optional[int] = None
    resprompt_separate: bool = False

    def check(self):
        if self.hidden is not None and self.hidden < 1:
            raise ConfigError(f"ResPrompt's bottleneck (PromptSpec.hidden) must be at least 1, got {self.hidden}")

    def build_module(self, width, init_fn):
        return rp.ResPrompt(hidden=self.hidden or rp.RESPROMPT_HIDDEN, separate=self.resprompt_separate,
                            **self.module_args(width, init_fn))
