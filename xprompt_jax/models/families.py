"""Named configs of the T5 families researchers start from today, and their Hugging Face hub names.

Each is a T5 1.1 layout (gated feed-forward, untied ``logits_dense``) with its own shapes:

- Flan-T5 (instruction-tuned T5 1.1 LM-adapted): T5 1.1's shapes exactly, ``flan_t5_{small..xxl}``.
- mT5: T5 1.1's shapes with the mC4 vocabulary of 250,112 pieces, ``mt5_{small..xxl}``.
- UL2 20B and Flan-UL2: gated SiLU, 32 + 32 layers, 16 heads of 256, ``ul2_20B`` / ``flan_ul2_20B``.
- ByT5: bytes as tokens (384 embedding rows), a deep encoder and a shallow decoder, ``byt5_{small..xxl}``
  (T5X's ``t5x/examples/t5/byt5/*.gin``).

The gin layering names them as every other size: ``--gin_file=models/mt5.gin --gin_file=sizes/base.gin``.
This module holds the shapes and names only; ``models/config.py`` builds the configs from them.
"""
from __future__ import annotations

MT5_VOCAB_SIZE = 250112  # mc4.250000.100extra: 250,000 pieces + 100 sentinels, padded
BYTE_VOCAB_SIZE = 384    # 3 special ids + 256 bytes = 259, padded to a multiple of 128 (T5X's value)
SIZES = ("small", "base", "large", "xl", "xxl")

# (emb_dim, num_heads, encoder layers, decoder layers, mlp_dim), head_dim 64: T5X's byt5/*.gin.
_BYT5 = {"small": (1472, 6, 12, 4, 3584), "base": (1536, 12, 18, 6, 3968), "large": (1536, 16, 36, 12, 3840),
         "xl": (2560, 32, 36, 12, 6720), "xxl": (4672, 64, 36, 12, 12352)}
# UL2 20B / Flan-UL2: T5Config fields (the config module builds it; this module holds data only).
UL2_20B = dict(emb_dim=4096, num_heads=16, head_dim=256, num_encoder_layers=32, num_decoder_layers=32, mlp_dim=16384,
               mlp_activations=("silu", "linear"), logits_via_embedding=False, scale_logits=False)


def byt5_fields(size: str) -> dict:
    """T5Config fields of ``byt5_{size}``."""
    emb, heads, enc, dec, mlp = _BYT5[size]
    return dict(vocab_size=BYTE_VOCAB_SIZE, emb_dim=emb, num_heads=heads, head_dim=64, num_encoder_layers=enc,
                num_decoder_layers=dec, mlp_dim=mlp, mlp_activations=("gelu", "linear"), logits_via_embedding=False)


# Hugging Face hub names -> named configs (a folder downloaded from the hub carries its config.json; the
# names serve T5X checkpoints of the same models and gin, where the config must be given).
HUB_NAMES = {
    **{f"google/flan-t5-{s}": f"flan_t5_{s}" for s in SIZES},
    **{f"google/mt5-{s}": f"mt5_{s}" for s in SIZES},
    **{f"google/byt5-{s}": f"byt5_{s}" for s in SIZES},
    **{f"google/t5-v1_1-{s}": f"t5_1_1_{s}" for s in SIZES},
    **{f"google/t5-{s}-lm-adapt": f"t5_1_1_{s}" for s in SIZES},
    **{f"t5-{s}": f"t5_1_0_{s}" for s in ("small", "base", "large")},
    "t5-3b": "t5_1_0_3B",
    "t5-11b": "t5_1_0_11B",
    "google/ul2": "ul2_20B",
    "google/flan-ul2": "flan_ul2_20B",
}

# Where the public checkpoints and vocabularies are (the README's model table).
MT5_VOCAB = "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model"
