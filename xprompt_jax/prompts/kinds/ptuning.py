"""Kind 'ptuning': P-Tuning's prompt encoder, ``ptuning_encoder`` 'mlp' or 'lstm' (``lstm_layers`` deep),
``hidden`` units (default: the model width e)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from xprompt_jax.prompts import reparameterized as rp
from xprompt_jax.prompts.kinds.base import PromptSpecBase, register_kind


@register_kind("ptuning")
@dataclasses.dataclass(frozen=True)
class PTuningSpec(PromptSpecBase):
    hidden: Optional[int] = None
    ptuning_encoder: str = "mlp"
    lstm_layers: int = 2

    def check(self):
        rp.check_ptuning(self.ptuning_encoder, self.hidden, self.lstm_layers)

    def build_module(self, width, init_fn):
        return rp.PTuningPrompt(encoder=self.ptuning_encoder, hidden=self.hidden, lstm_layers=self.lstm_layers,
                                **self.module_args(width, init_fn))
