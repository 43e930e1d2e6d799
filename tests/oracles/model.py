"""A plain NumPy float64 reference forward pass for llama, gemma3, qwen2 and qwen3.

Independent of service/model and kernels/: it reads the file with gguf.GGUFReader,
dequantizes every tensor with gguf.quants.dequantize, and writes each operation out from
llama.cpp's graph for the architecture (src/models/*.cpp):

  x = token_embd[tokens]                     (* sqrt(n_embd) for gemma3)
  per layer:
    h = rms_norm(x) * attn_norm
    q, k, v = h @ Wq.T, h @ Wk.T, h @ Wv.T    (+ bq, bk, bv for qwen2)
    q, k = rms_norm per head * q_norm, k_norm (gemma3, qwen3)
    q, k = rope(q), rope(k)                    normal pairs (2i, 2i+1) for llama,
                                               NeoX pairs (i, i + d/2) otherwise;
                                               gemma3's sliding-window layers use base 10000
    a = softmax(q k^T / sqrt(head_dim) + causal [+ window] mask) v, GQA
    o = a @ Wo.T                               (rms_norm * post_attention_norm for gemma3)
    x = x + o
    h = rms_norm(x) * ffn_norm
    f = (silu | gelu_tanh)(h @ Wg.T) * (h @ Wu.T) @ Wd.T   (gelu_tanh for gemma3)
                                               (rms_norm * post_ffw_norm for gemma3)
    x = x + f
  logits = rms_norm(x) * output_norm @ output.T   (token_embd when there is no output)

gemma3: layer il uses the sliding window iff il % 6 != 5; a key at position j is visible
to a query at p iff 0 <= p - j < window (llama.cpp masks p - j >= n_swa).

forward(..., act_q8=True) also rounds the input of every product with a quantized weight
to int8 per 32 values (scale amax / 127, round half to even), as llama.cpp's (and our)
quantized matmuls do; everything else stays float64. That isolates the matmul kernels'
own error from the error inherent in int8 activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize


@dataclass
class OracleModel:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    eps: float
    rope_base: float
    window: int
    t: dict[str, np.ndarray]  # tensor name -> float64, numpy shape (n_out, n_in) or (n,)
    qtype: dict[str, GGMLQuantizationType]

    def swa(self, il: int) -> bool:
        return self.arch == "gemma3" and self.window > 0 and il % 6 != 5


def load(path: str | Path) -> OracleModel:
    r = GGUFReader(path)

    def get(key, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()

    arch = get("general.architecture")
    n_embd, n_head = get(f"{arch}.embedding_length"), get(f"{arch}.attention.head_count")
    tensors, qtypes = {}, {}
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))  # numpy order
        tensors[t.name] = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float64).reshape(shape)
        qtypes[t.name] = t.tensor_type
    return OracleModel(
        arch=arch, n_layer=get(f"{arch}.block_count"), n_embd=n_embd, n_head=n_head,
        n_head_kv=get(f"{arch}.attention.head_count_kv", n_head),
        head_dim=get(f"{arch}.attention.key_length", n_embd // n_head),
        eps=float(get(f"{arch}.attention.layer_norm_rms_epsilon")),
        rope_base=float(get(f"{arch}.rope.freq_base", 1e6 if arch == "gemma3" else 10000.0)),
        window=get(f"{arch}.attention.sliding_window", 0), t=tensors, qtype=qtypes)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """Over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x: np.ndarray, pos: np.ndarray, base: float, neox: bool) -> np.ndarray:
    """x (T, H, D) rotated at positions pos (T,); all D dimensions rotate."""
    d = x.shape[-1]
    theta = pos[:, None].astype(np.float64) * base ** (-2.0 * np.arange(d // 2) / d)  # (T, D/2)
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    out = x.copy()
    if neox:
        x0, x1 = x[..., : d // 2], x[..., d // 2 :]
        out[..., : d // 2], out[..., d // 2 :] = x0 * c - x1 * s, x0 * s + x1 * c
    else:
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out[..., 0::2], out[..., 1::2] = x0 * c - x1 * s, x0 * s + x1 * c
    return out


def attention(q, k, v, window: int) -> np.ndarray:
    """q (T, H, D), k, v (T, Hkv, D) for positions 0..T-1; causal, optional window."""
    n, h, d = q.shape
    group = h // k.shape[1]
    p = np.arange(n)
    dist = p[:, None] - p[None, :]
    visible = (dist >= 0) & ((dist < window) if window > 0 else True)
    out = np.empty_like(q)
    for hi in range(h):
        s = q[:, hi] @ k[:, hi // group].T / np.sqrt(d)
        s = np.where(visible, s, -np.inf)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, hi] = (e / e.sum(axis=1, keepdims=True)) @ v[:, hi // group]
    return out


_FLOAT = (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16)


def q8(x: np.ndarray) -> np.ndarray:
    """x rounded to int8 codes per 32 values along the last axis, and back."""
    b = x.reshape(*x.shape[:-1], -1, 32)
    d = np.abs(b).max(axis=-1, keepdims=True) / 127.0
    q = np.rint(np.divide(b, d, out=np.zeros_like(b), where=d > 0))
    return (q * d).reshape(x.shape)


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def forward(m: OracleModel, tokens, act_q8: bool = False) -> np.ndarray:
    """Logits (T, n_vocab) float64 of one sequence starting at position 0."""
    head = "output.weight" if "output.weight" in m.t else "token_embd.weight"
    h = hidden(m, tokens, act_q8)
    return (q8(h) if act_q8 and m.qtype[head] not in _FLOAT else h) @ m.t[head].T


def hidden(m: OracleModel, tokens, act_q8: bool = False) -> np.ndarray:
    """Final-norm hidden states (T, n_embd) float64 of one sequence starting at position 0: what
    the output head reads, and what llama.cpp pools into an embedding."""
    t, eps, hd = m.t, m.eps, m.head_dim

    def mm(x, name):  # x @ W.T
        quantized = act_q8 and m.qtype[name] not in _FLOAT
        return (q8(x) if quantized else x) @ t[name].T

    tokens = np.asarray(tokens)
    n = len(tokens)
    pos = np.arange(n)
    gemma = m.arch == "gemma3"
    x = t["token_embd.weight"][tokens]
    if gemma:
        x = x * np.sqrt(m.n_embd)
    for il in range(m.n_layer):
        p = f"blk.{il}."
        h = rms_norm(x, t[p + "attn_norm.weight"], eps)
        q, k, v = (mm(h, f"{p}attn_{c}.weight") for c in "qkv")
        if m.arch == "qwen2":
            q, k, v = q + t[p + "attn_q.bias"], k + t[p + "attn_k.bias"], v + t[p + "attn_v.bias"]
        q, k, v = q.reshape(n, m.n_head, hd), k.reshape(n, m.n_head_kv, hd), v.reshape(n, m.n_head_kv, hd)
        if m.arch in ("gemma3", "qwen3"):
            q = rms_norm(q, t[p + "attn_q_norm.weight"], eps)
            k = rms_norm(k, t[p + "attn_k_norm.weight"], eps)
        swa = m.swa(il)
        base = 10000.0 if gemma and swa else m.rope_base
        neox = m.arch != "llama"
        q, k = rope(q, pos, base, neox), rope(k, pos, base, neox)
        a = attention(q, k, v, m.window if swa else 0).reshape(n, m.n_head * hd)
        o = mm(a, p + "attn_output.weight")
        if gemma:
            o = rms_norm(o, t[p + "post_attention_norm.weight"], eps)
        x = x + o
        h = rms_norm(x, t[p + "ffn_norm.weight"], eps)
        g, u = mm(h, p + "ffn_gate.weight"), mm(h, p + "ffn_up.weight")
        f = mm((gelu_tanh(g) if gemma else silu(g)) * u, p + "ffn_down.weight")
        if gemma:
            f = rms_norm(f, t[p + "post_ffw_norm.weight"], eps)
        x = x + f
    return rms_norm(x, t["output_norm.weight"], eps)
