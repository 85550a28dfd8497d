"""T5 architecture hyper-parameters, with the named sizes of T5 1.0 and T5 1.1.

Field names follow T5X's ``network.T5Config`` so that a T5X gin file's values carry over unchanged.
A T5X checkpoint stores no config, so the importer checks every parameter shape against one of these.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

from xprompt_jax.models import families

T5_VOCAB_SIZE = 32128  # 32,000 SentencePiece pieces + 100 sentinels, padded as T5 pads it.


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Hyper-parameters of one T5 encoder-decoder.

    ``dtype`` is the activation dtype; ``param_dtype`` the dtype parameters are created and kept in.
    ``logits_via_embedding`` ties the output layer to ``token_embedder/embedding`` (T5 1.0); otherwise
    ``decoder/logits_dense`` is its own matrix (T5 1.1). ``scale_logits`` multiplies the decoder output
    by ``emb_dim ** -0.5`` before the output layer, which T5 1.0 does and T5 1.1 does not.
    ``remat`` is 'none', 'full' (recompute each layer in the backward pass) or 'minimal' (keep only
    matrix products without batch dimensions) and trades compute for memory on large models.
    ``scan_layers`` runs each stack as one ``nn.scan`` over a layer (parameters stacked on axis 1, T5X's
    ``scan_layers``): one layer is compiled instead of 24 at large, xl and xxl; the result is the same.
    ``per_layer_relpos_bias``: each layer has its own relative-position table (flaxformer's scanned T5X
    models), not one per stack (T5); set by the checkpoint reader when a checkpoint has them.
    """

    vocab_size: int = T5_VOCAB_SIZE
    emb_dim: int = 512
    num_heads: int = 6
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    head_dim: int = 64
    mlp_dim: int = 1024
    mlp_activations: Tuple[str, ...] = ("gelu", "linear")
    logits_via_embedding: bool = False
    scale_logits: bool = False
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.0
    layer_norm_epsilon: float = 1e-6
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: str = "none"
    attention_implementation: Optional[str] = None
    scan_layers: bool = False
    per_layer_relpos_bias: bool = False

    def __post_init__(self):
        # gin and JSON hand over lists; the config must stay hashable for jit.
        object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))
        if self.attention_implementation not in (None, "xla", "cudnn", "auto"):
            raise ValueError(f"T5Config.attention_implementation must be None (explicit einsums), 'xla', 'cudnn' "
                             f"or 'auto' (cuDNN flash attention on GPU when it fits), got {self.attention_implementation!r}")
        if self.remat not in ("none", "full", "minimal"):
            raise ValueError(f"T5Config.remat must be 'none', 'full' or 'minimal', got {self.remat!r}")
        for act in self.mlp_activations:
            if act not in ("relu", "gelu", "silu", "linear"):
                raise ValueError(f"T5Config.mlp_activations: unknown activation {act!r} "
                                 "(use 'relu', 'gelu', 'silu', 'linear')")

    def replace(self, **changes) -> "T5Config":
        return dataclasses.replace(self, **changes)

    @property
    def variant(self) -> str:
        return "t5_1_0" if self.logits_via_embedding else "t5_1_1"  # the layout; families: models/families.py


# (num_heads, num_layers per stack, emb_dim, mlp_dim), docs/methods.md section 1 and the T5 paper.
_T5_1_1_SIZES = {
    "small": (6, 8, 512, 1024),
    "base": (12, 12, 768, 2048),
    "large": (16, 24, 1024, 2816),
    "xl": (32, 24, 2048, 5120),
    "xxl": (64, 24, 4096, 10240),
}
# T5 1.0 adds head_dim: 3B and 11B use 128.
_T5_1_0_SIZES = {
    "small": (8, 6, 512, 2048, 64),
    "base": (12, 12, 768, 3072, 64),
    "large": (16, 24, 1024, 4096, 64),
    "3B": (32, 24, 1024, 16384, 128),
    "11B": (128, 24, 1024, 65536, 128),
}
# A test size: T5 1.1 shapes small enough for a CPU test in seconds.
_TINY = dict(num_heads=4, num_encoder_layers=2, num_decoder_layers=2, emb_dim=32, head_dim=8, mlp_dim=64)


def _t5_1_1(num_heads: int, layers: int, emb_dim: int, mlp_dim: int) -> T5Config:
    return T5Config(num_heads=num_heads, num_encoder_layers=layers, num_decoder_layers=layers,
                    emb_dim=emb_dim, mlp_dim=mlp_dim, head_dim=64, mlp_activations=("gelu", "linear"),
                    logits_via_embedding=False, scale_logits=False)


def _t5_1_0(num_heads: int, layers: int, emb_dim: int, mlp_dim: int, head_dim: int) -> T5Config:
    return T5Config(num_heads=num_heads, num_encoder_layers=layers, num_decoder_layers=layers,
                    emb_dim=emb_dim, mlp_dim=mlp_dim, head_dim=head_dim, mlp_activations=("relu",),
                    logits_via_embedding=True, scale_logits=True)


def _named_configs() -> dict:
    named = {}
    for size, dims in _T5_1_1_SIZES.items():
        named[f"t5_1_1_{size}"] = _t5_1_1(*dims)
    for size, dims in _T5_1_0_SIZES.items():
        named[f"t5_1_0_{size}"] = _t5_1_0(*dims)
    named["t5_1_1_tiny"] = T5Config(**_TINY)
    named["t5_1_0_tiny"] = T5Config(**_TINY, mlp_activations=("relu",), logits_via_embedding=True,
                                    scale_logits=True)
    # google-research/prompt-tuning's test model (configs/test/t5_1_1_tiny.gin), the architecture of the
    # real T5X checkpoint in ../shared/fixtures/t5x_t5_1_1_tiny.
    named["t5_1_1_prompt_tuning_test"] = T5Config(
        num_heads=2, head_dim=2, emb_dim=4, mlp_dim=8, num_encoder_layers=2, num_decoder_layers=2,
        relative_attention_num_buckets=4, relative_attention_max_distance=8)
    # The built-in demo's model (tasks/demo.py): its vocabulary has 21 pieces, its inputs at most 9 words.
    named["t5_1_1_demo"] = T5Config(
        vocab_size=128, num_heads=4, head_dim=16, emb_dim=64, mlp_dim=128, num_encoder_layers=2,
        num_decoder_layers=2, relative_attention_num_buckets=16, relative_attention_max_distance=32)
    named.update(_family_configs(named))
    return named


def _family_configs(named: dict) -> dict:
    """Flan-T5, mT5, UL2 and ByT5, from the shapes in ``models/families.py``."""
    configs = {}
    for size in families.SIZES:
        configs[f"flan_t5_{size}"] = named[f"t5_1_1_{size}"]
        configs[f"mt5_{size}"] = named[f"t5_1_1_{size}"].replace(vocab_size=families.MT5_VOCAB_SIZE)
        configs[f"byt5_{size}"] = T5Config(**families.byt5_fields(size))
    configs["ul2_20B"] = configs["flan_ul2_20B"] = T5Config(**families.UL2_20B)
    return configs


NAMED_CONFIGS = _named_configs()


def t5_config(name: Optional[str] = None, variant: str = "t5_1_1", size: str = "base", **overrides) -> T5Config:
    """A named T5 config with overrides; gin layers bind ``variant`` (models/) and ``size`` (sizes/).

    ``name`` is a full name (``t5_1_0_small``, ``t5_1_1_tiny``, ``mt5_base``), a Hugging Face hub name
    (``google/flan-t5-base``, ``models/families.HUB_NAMES``) or a bare size, which means T5 1.1,
    the family prompt tuning and XPrompt start from (the LM-adapted checkpoints
    ``t5_1_1_lm100k_{size}`` share these shapes). Without ``name``: ``{variant}_{size}``.
    Any other keyword (``dtype='bfloat16'``, ``remat='full'``...) overrides a field.
    """
    if name is None:
        key = f"{variant}_{size}"
    else:
        name = families.HUB_NAMES.get(name, name)  # google/flan-t5-base & co.
        key = name if name in NAMED_CONFIGS else f"t5_1_1_{name}"
    if key not in NAMED_CONFIGS:
        raise ValueError(f"Unknown T5 config {name or key!r}; known: {', '.join(sorted(NAMED_CONFIGS))}")
    unknown = sorted(set(overrides) - set(T5Config.__dataclass_fields__))
    if unknown:
        raise ValueError(f"t5_config: unknown field(s) {', '.join(unknown)}; T5Config fields are "
                         f"{', '.join(T5Config.__dataclass_fields__)}")
    return NAMED_CONFIGS[key].replace(**overrides)


VARIANTS = ("t5_1_0", "t5_1_1", "flan_t5", "mt5", "byt5", "ul2", "flan_ul2")  # gin/models/<variant>.gin


def variant_and_size(name: str):
    """``('t5_1_1', 'prompt_tuning_test')`` for ``'t5_1_1_prompt_tuning_test'``: the models/ and sizes/ gin
    files that give a named config."""
    variant = max((v for v in VARIANTS if name.startswith(v + "_")), key=len)
    return variant, name[len(variant) + 1:]


def describe(config: T5Config) -> str:
    acts: Sequence[str] = config.mlp_activations
    return (f"{config.variant}: {config.num_encoder_layers}+{config.num_decoder_layers} layers, "
            f"d_model {config.emb_dim}, {config.num_heads} heads x {config.head_dim}, d_ff {config.mlp_dim}, "
            f"mlp {'-'.join(acts)}, vocab {config.vocab_size}, "
            f"logits {'tied to embedding' if config.logits_via_embedding else 'logits_dense'}"
            f"{' scaled by d_model^-0.5' if config.scale_logits else ''}")
