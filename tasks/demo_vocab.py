"""Builds ``tasks/demo_vocab.model``: a word-level SentencePiece model of the demo's words.

    python -m tasks.demo_vocab          # rebuild the shipped file (deterministic)

Ids follow T5's conventions (0 padding, 1 EOS, 2 unknown), so the model, the feature converter and
decoding treat it exactly like the T5 vocabulary. One piece per word keeps sequences short.
"""
from __future__ import annotations

import io
import os
import sys

from tasks.demo_family import WORDS

VOCAB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_vocab.model")


def build_model_proto() -> bytes:
    import sentencepiece as spm

    # Every word equally often, so ids follow WORDS' order after the three special pieces.
    corpus = "\n".join(" ".join(WORDS) for _ in range(50))
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus.splitlines()), model_writer=model, model_type="word",
        vocab_size=len(WORDS) + 3, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        normalization_rule_name="identity", minloglevel=2, num_threads=1)
    return model.getvalue()


def main() -> int:
    proto = build_model_proto()
    tmp = VOCAB_PATH + ".tmp"
    with open(tmp, "wb") as f:
        f.write(proto)
    os.replace(tmp, VOCAB_PATH)
    print(f"wrote {VOCAB_PATH} ({len(WORDS) + 3} pieces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
