"""An independent float64 NumPy T5 forward pass, written from Hugging Face's layout and formulas.

It shares no code with ``xprompt_jax``: different parameter layout (HF ``[out, in]`` weights, bias
table in block 0 as ``[buckets, heads]``), its own bucket function (HF's formula, no epsilon), its
own masking. Tests compare the Flax model against it on the same weights.
"""
import math

import numpy as np


def _bucket(rel, bidirectional, num_buckets, max_distance):
    buckets = np.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        buckets += (rel > 0).astype(rel.dtype) * num_buckets
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore", invalid="ignore"):
        large = max_exact + (np.log(rel.astype(np.float64) / max_exact) / math.log(max_distance / max_exact)
                             * (num_buckets - max_exact)).astype(rel.dtype)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(rel < max_exact, rel, large)


def _norm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


class NumpyT5:
    def __init__(self, tensors, hf_config):
        self.w = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
        self.c = hf_config
        self.h = hf_config["num_heads"]
        self.dk = hf_config["d_kv"]
        self.eps = hf_config.get("layer_norm_epsilon", 1e-6)
        self.gated = hf_config.get("feed_forward_proj", "relu").startswith("gated")
        tied = "lm_head.weight" not in tensors or np.array_equal(tensors["lm_head.weight"], tensors["shared.weight"])
        self.lm_head = self.w["shared.weight"] if tied else self.w["lm_head.weight"]
        self.scale = hf_config.get("scale_decoder_outputs", hf_config.get("tie_word_embeddings", True) is not False)

    def _bias(self, stack, q_len, k_len, bidirectional):
        rel = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]
        b = _bucket(rel, bidirectional, self.c.get("relative_attention_num_buckets", 32),
                    self.c.get("relative_attention_max_distance", 128))
        table = self.w[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        return table[b].transpose(2, 0, 1)[None]  # [1, heads, q, k]

    def _attn(self, p, x, kv, bias, key_mask):
        B, T, _ = x.shape
        S = kv.shape[1]
        q = (x @ self.w[p + ".q.weight"].T).reshape(B, T, self.h, self.dk).transpose(0, 2, 1, 3)
        k = (kv @ self.w[p + ".k.weight"].T).reshape(B, S, self.h, self.dk).transpose(0, 2, 1, 3)
        v = (kv @ self.w[p + ".v.weight"].T).reshape(B, S, self.h, self.dk).transpose(0, 2, 1, 3)
        scores = q @ k.transpose(0, 1, 3, 2) + bias
        scores = np.where(key_mask, scores, -1e30)
        out = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(B, T, self.h * self.dk)
        return out @ self.w[p + ".o.weight"].T

    def _ff(self, p, x):
        if self.gated:
            h = _gelu_tanh(x @ self.w[p + ".wi_0.weight"].T) * (x @ self.w[p + ".wi_1.weight"].T)
        else:
            h = np.maximum(x @ self.w[p + ".wi.weight"].T, 0.0)
        return h @ self.w[p + ".wo.weight"].T

    def encode(self, ids, mask):
        x = self.w["shared.weight"][ids]
        L = ids.shape[1]
        bias = self._bias("encoder", L, L, True)
        key_mask = mask.astype(bool)[:, None, None, :]
        for i in range(self.c["num_layers"]):
            p = f"encoder.block.{i}.layer"
            x = x + self._attn(p + ".0.SelfAttention", _norm(x, self.w[p + ".0.layer_norm.weight"], self.eps),
                               _norm(x, self.w[p + ".0.layer_norm.weight"], self.eps), bias, key_mask)
            x = x + self._ff(p + ".1.DenseReluDense", _norm(x, self.w[p + ".1.layer_norm.weight"], self.eps))
        return _norm(x, self.w["encoder.final_layer_norm.weight"], self.eps)

    def logits(self, ids, mask, decoder_ids):
        enc = self.encode(ids, mask)
        y = self.w["shared.weight"][decoder_ids]
        T = decoder_ids.shape[1]
        bias = self._bias("decoder", T, T, False)
        causal = np.tril(np.ones((T, T), bool))[None, None]
        cross_mask = mask.astype(bool)[:, None, None, :]
        for i in range(self.c.get("num_decoder_layers") or self.c["num_layers"]):
            p = f"decoder.block.{i}.layer"
            h = _norm(y, self.w[p + ".0.layer_norm.weight"], self.eps)
            y = y + self._attn(p + ".0.SelfAttention", h, h, bias, causal)
            h = _norm(y, self.w[p + ".1.layer_norm.weight"], self.eps)
            y = y + self._attn(p + ".1.EncDecAttention", h, enc, 0.0, cross_mask)
            y = y + self._ff(p + ".2.DenseReluDense", _norm(y, self.w[p + ".2.layer_norm.weight"], self.eps))
        y = _norm(y, self.w["decoder.final_layer_norm.weight"], self.eps)
        if self.scale:
            y = y * self.c["d_model"] ** -0.5
        return y @ self.lm_head.T
