"""Kind 'ept': one vector through a rank-``rank`` linear bottleneck, broadcast to ``length`` copies
(length 1 is EPT, 10 is EPT*)."""
from __future__ import annotations

import dataclasses

from xprompt_jax.prompts import reparameterized as rp
from xprompt_jax.prompts.kinds.base import PromptSpecBase, register_kind


@register_kind("ept")
@dataclasses.dataclass(frozen=True)
class EPTSpec(PromptSpecBase):
    rank: int = 1

    def check(self):
        rp.check_ept(self.rank, None, self.length)  # r < e is checked against the model when built

    def build_module(self, width, init_fn):
        return rp.EPTPrompt(rank=self.rank, **self.module_args(width, init_fn))
