"""T5's vocabularies without TensorFlow, for training and evaluation hosts: SentencePiece and ByT5's bytes.

seqio's ``SentencePieceVocabulary`` needs TensorFlow; evaluation here only turns label strings into ids
and generated ids back into text, which the ``sentencepiece`` package does alone. Ids at or above the
model's piece count are T5's sentinels (``extra_ids``) and decode to nothing. Local and ``gs://`` paths
are read through the same storage layer as checkpoints.
"""
from __future__ import annotations

import functools
import hashlib
import posixpath
from typing import List, Sequence

import numpy as np
import sentencepiece

from xprompt_jax.errors import ConfigError
from xprompt_jax.t5_import import storage

PAD_ID, EOS_ID = 0, 1
DEFAULT_VOCAB_PATH = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"


_FIX = "Name a local SentencePiece model with the XPROMPT_VOCAB_PATH environment variable or the vocabulary path setting"


BYTE_VOCABULARY = "byte"  # what a run or cache records for ByT5's byte vocabulary (XPROMPT_VOCAB_PATH=byte)


class _PaddedEncoding:
    def encode_padded(self, texts: Sequence[str], length: int = 0) -> np.ndarray:
        """Each text + EOS, right-padded to a common length (at least ``length``)."""
        rows = [self.encode(t) for t in texts]
        width = max([length] + [len(r) for r in rows])
        out = np.zeros((len(rows), width), np.int32)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out


class ByteVocabulary(_PaddedEncoding):
    """ByT5's vocabulary without TensorFlow, as ``seqio.ByteVocabulary``: id = UTF-8 byte + 3 (0 pad,
    1 EOS, 2 unknown); the model's embedding has 384 rows, of which these 259 are used."""
    path = BYTE_VOCABULARY
    fingerprint = BYTE_VOCABULARY
    OFFSET = 3
    piece_count = 256 + OFFSET

    def encode(self, text: str, add_eos: bool = True) -> List[int]:
        ids = [b + self.OFFSET for b in text.encode("utf-8")]
        return ids + [EOS_ID] if add_eos else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text up to the first EOS; padding, special and out-of-range ids dropped, broken UTF-8 skipped."""
        out = bytearray()
        for i in np.asarray(ids).tolist():
            if i == EOS_ID:
                break
            if self.OFFSET <= i < self.piece_count:
                out.append(i - self.OFFSET)
        return out.decode("utf-8", errors="ignore")


class Vocabulary(_PaddedEncoding):
    """A SentencePiece model (T5's 32k, mT5's 250k, or a task's own), read from a local or ``gs://`` path."""

    def __init__(self, path: str = DEFAULT_VOCAB_PATH):
        self.path = path
        try:
            proto = storage.read_bytes(posixpath.dirname(path) or ".", posixpath.basename(path))
        except Exception as err:  # noqa: BLE001 - tensorstore raises several kinds
            proto, reason = None, " ".join(str(err).split())
        else:
            reason = "no such file"
        if not proto:
            raise ConfigError(f"cannot read the SentencePiece model {path}: {reason}. {_FIX}")
        self.fingerprint = hashlib.sha256(proto).hexdigest()  # the same model under two paths is one vocabulary
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(proto)
        except RuntimeError:
            raise ConfigError(f"{path} is not a SentencePiece model ({len(proto)} bytes that do not parse as "
                              f"one). {_FIX}") from None

    @property
    def piece_count(self) -> int:
        return self._sp.GetPieceSize()

    def encode(self, text: str, add_eos: bool = True) -> List[int]:
        ids = list(self._sp.EncodeAsIds(text))
        return ids + [EOS_ID] if add_eos else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text up to the first EOS; padding and sentinel ids dropped."""
        out = []
        for i in np.asarray(ids).tolist():
            if i == EOS_ID:
                break
            if PAD_ID < i < self.piece_count:
                out.append(i)
        return self._sp.DecodeIds(out)



@functools.lru_cache(maxsize=4)
def load_vocabulary(path: str = DEFAULT_VOCAB_PATH):
    """The vocabulary a path names: ``'byte'`` for ByT5's bytes, else a SentencePiece model file."""
    if path in (BYTE_VOCABULARY, "bytes"):
        return ByteVocabulary()
    return Vocabulary(path)
