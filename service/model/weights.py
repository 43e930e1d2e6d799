"""Model weights: GGUF tensors checked against the config and packed once for the kernels.

Matrices that read the same input are fused when their types agree (Q, K, V into one
matrix; FFN gate and up into another), so one quantization of the input and one kernel
call serve them all. Norm vectors stay zero-copy views of the file's memory map.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as T

from kernels.dequant import supported_types
from kernels.matmul import PackedMatrix, pack
from kernels.packing import FLOAT_TYPES
from service.gguf_reader import GGUFFile
from service.model.config import ModelConfig, ModelError
from service.model.experts import MoELayer, load_moe
from service.model.variants import cpu_only

_NORM_TYPES = (T.F32,)
# The rerank head, read by service.model.rank when /rerank asks for it (as llama.cpp's rank
# pooling does), not by this loader: the only tensors it lets through unread.
RANK_HEAD = ("cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias")
_MATRIX_TYPES = frozenset(supported_types())  # what pack() and the embedding lookup take


@dataclass
class Layer:
    """Matrices are PackedMatrix for CPU layers, kernels.cuda.packing.DeviceMatrix for offloaded ones."""

    attn_norm: np.ndarray | None  # (n_embd,) float32; None: no norm before attention (olmo2)
    wqkv: list[PackedMatrix]  # fused [Q;K;V] (one matrix), or Q, K, V separately
    bqkv: np.ndarray | None  # (n_q + 2 n_kv,) qwen2's biases
    q_norm: np.ndarray | None  # (head_dim,), or (n_head * head_dim,) spanning the whole projection (olmo2)
    k_norm: np.ndarray | None
    wo: PackedMatrix
    post_attn_norm: np.ndarray | None
    ffn_norm: np.ndarray | None  # None: no norm before the FFN (olmo2)
    wgate_up: list[PackedMatrix]  # fused [gate; up], or gate, up; empty in a MoE layer
    wdown: PackedMatrix | None  # None in a MoE layer
    post_ffn_norm: np.ndarray | None
    moe: MoELayer | None = None  # the experts that replace the FFN (service.model.moe runs them)
    bo: np.ndarray | None = None  # (n_embd,) attn_output.bias (gpt-oss)
    sinks: np.ndarray | None = None  # (n_head,) each head's sink logit (gpt-oss)


@dataclass
class Weights:
    embd: np.ndarray  # token_embd rows as stored: uint8 (n_vocab, row_bytes) or float
    embd_type: T
    output_norm: np.ndarray
    output: PackedMatrix  # the output head (token_embd itself when tied)
    layers: list[Layer]
    rope_freqs: np.ndarray | None = None  # (rope_dims // 2,) llama3 scaling's per-pair divisors
    # (rope_dims // 2,) phi3 longrope's per-pair divisors for long and short contexts (see rope_factors)
    rope_long: np.ndarray | None = None
    rope_short: np.ndarray | None = None


def llamacpp_ctx_seq(n_ctx: int, n_seq: int = 1, unified: bool = True) -> int:
    """llama.cpp's n_ctx_seq for a context of n_ctx tokens (-c; the trained length when 0) over n_seq
    sequences: n_ctx rounded up to a multiple of 256, and without a unified cache that divided by
    n_seq, rounded up again."""
    n = -(-n_ctx // 256) * 256
    return n if unified else -(-(n // n_seq) // 256) * 256


def rope_factors(cfg: ModelConfig, w: Weights, n_ctx_seq: int) -> np.ndarray | None:
    """The per-pair divisors of every RoPE angle, as llama.cpp's get_rope_factors picks them: llama3's
    rope_freqs, else longrope's long table when the context per sequence n_ctx_seq (llama.cpp's
    n_ctx_seq, padded to 256) exceeds the original context, else the short one (None: plain RoPE)."""
    if w.rope_freqs is not None:
        return w.rope_freqs
    return w.rope_long if n_ctx_seq > cfg.rope_n_orig else w.rope_short


class _Loader:
    def __init__(self, f: GGUFFile, cfg: ModelConfig, check_only: bool = False, n_gpu: int = 0,
                 gpu_output: bool = False):
        self.f, self.cfg = f, cfg
        self.check_only = check_only  # validate names, shapes and types; pack nothing
        self.n_gpu, self.gpu_output = n_gpu, gpu_output  # offloaded layers 0..n_gpu-1, and the head
        self.device = False  # the matrices being read now go to the GPU
        self.used: set[str] = set()  # every tensor name looked up
        self.expert_tensors: list[str] = []  # 3-D tensors read by experts(): released once stacked

    def fail(self, name: str, problem: str) -> ModelError:
        return ModelError(f"{self.f.path}: {name}: {problem}")

    def info(self, name: str, shape: tuple[int, ...]):
        self.used.add(name)
        t = self.f.tensors.get(name)
        if t is None:
            raise self.fail(name, "tensor missing")
        if t.shape != shape:
            raise self.fail(name, f"shape {t.shape} does not match the metadata's {shape}")
        return t

    def vector(self, name: str, n: int, optional: bool = False) -> np.ndarray | None:
        self.used.add(name)
        if optional and name not in self.f.tensors:
            return None
        t = self.info(name, (n,))
        if t.qtype not in _NORM_TYPES:
            raise self.fail(name, f"type {t.qtype.name} is not supported for a vector (F32 expected)")
        return self.f.data(name)

    def raw(self, name: str, k: int, n: int) -> tuple[np.ndarray, T]:
        t = self._typed(name, (k, n))
        return self.f.data(name).reshape(n, -1), t.qtype

    def _typed(self, name: str, shape: tuple[int, ...]):
        t = self.info(name, shape)
        if t.qtype not in _MATRIX_TYPES:
            raise self.fail(name, f"type {t.qtype.name} is not supported for a matrix")
        if t.qtype not in FLOAT_TYPES and shape[0] % 32:
            raise self.fail(name, f"row length {shape[0]} is not a multiple of 32")
        return t

    def experts(self, name: str, k: int, n: int, n_expert: int) -> list:
        """Futures of the n_expert packed (n, k) matrices of a 3-D tensor of GGUF shape (k, n, n_expert)."""
        t = self._typed(name, (k, n, n_expert))
        if self.check_only:
            return [None] * n_expert
        self.expert_tensors.append(name)
        rows = self.f.data(name).view(np.uint8).reshape(n_expert, n, -1)  # (n_expert, n, row bytes)
        return [self.pool.submit(self._pack_expert, name, rows[x], t.qtype, n, k) for x in range(n_expert)]

    def _pack_expert(self, name, rows, qt, n, k):
        try:
            return pack(rows, qt, n, k)
        except ValueError as e:
            raise self.fail(name, str(e)) from None

    def matrices(self, names: list[str], k: int, ns: list[int]) -> list[PackedMatrix]:
        """Pack one fused matrix when all types agree, else one per name."""
        raws = [self.raw(nm, k, n) for nm, n in zip(names, ns)]
        if self.check_only:
            return [None] * len(names)  # type: ignore[list-item]
        types = {qt for _, qt in raws}
        if len(types) == 1:
            qt = types.pop()
            jobs = [([r.view(np.uint8).reshape(n, -1) for (r, _), n in zip(raws, ns)], qt, sum(ns))]
        else:
            jobs = [([r.view(np.uint8)], qt, n) for (r, qt), n in zip(raws, ns)]
        dev = self.device  # read now: the pool runs the jobs later
        return [self.pool.submit(self._pack, dev, names, parts, qt, n, k) for parts, qt, n in jobs]

    def _pack(self, device, names, parts, qt, n, k):
        """PackedMatrix for the CPU; for the GPU, the host arrays that _done() uploads."""
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        try:
            if device:
                from kernels.cuda.packing import host_form

                out = _ForDevice(host_form(rows, qt, n, k), qt, n, k)
            else:  # a single tensor's rows are the file's: let each packed chunk's pages go at once
                rb = rows.shape[-1] if rows.ndim == 2 else 0
                done = (lambda r0, r1: self.f.release(names[0], r0 * rb, r1 * rb)) if len(parts) == 1 and rb else None
                out = pack(rows, qt, n, k, consumed=done)
        except ValueError as e:
            raise self.fail(",".join(names), str(e)) from None
        for name in names:  # packed copies replace the file's pages (token_embd's rows fault back per lookup)
            self.f.release(name)
        return out


def load_weights(f: GGUFFile, cfg: ModelConfig, n_gpu: int = 0, gpu_output: bool = False) -> Weights:
    """Check every tensor the config needs (presence, shape, type) before packing any, so a
    broken file fails with one error before seconds of packing; then pack.

    Packing runs on a small thread pool: it is NumPy work that releases the GIL, and it is
    most of the load time (Gemma 3 270M: 2.5 s on one thread). Matrices of offloaded layers
    (and of the head with gpu_output) are prepared in the pool and uploaded on this thread."""
    why = cpu_only(cfg)
    if why and (n_gpu or gpu_output):
        raise ModelError(f"{f.path}: {why}: they run on the CPU only (start with -ngl 0)")
    check = _Loader(f, cfg, check_only=True)
    _build(check)
    unused = [n for n in f.tensors if n not in check.used and n not in RANK_HEAD]
    if unused:  # llama.cpp refuses these too ("wrong number of tensors"): never dropped silently
        more = f" and {len(unused) - 8} more" if len(unused) > 8 else ""
        raise ModelError(f"{f.path}: tensor(s) {', '.join(unused[:8])}{more} are not used by the {cfg.arch} "
                         f"loader (llama.cpp: wrong number of tensors; expected {len(f.tensors)}, "
                         f"got {len(f.tensors) - len(unused)})")
    ld = _Loader(f, cfg, n_gpu=n_gpu, gpu_output=gpu_output)
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as ld.pool:
        w = _build(ld)
        w.output = _done(w.output)
        for L in w.layers:
            L.wqkv, L.wgate_up = [_done(m) for m in L.wqkv], [_done(m) for m in L.wgate_up]
            L.wo, L.wdown = _done(L.wo), _done(L.wdown)
            L.moe = L.moe and L.moe.resolved(_done)
    for name in ld.expert_tensors:  # stacked copies replace the file's pages
        f.release(name)
    return w


class _ForDevice:
    """A matrix prepared on the host for upload (kernels.cuda.packing.host_form)."""

    def __init__(self, form, qt, n, k):
        self.form, self.qt, self.n, self.k = form, qt, n, k


def _done(m):
    m = m.result() if isinstance(m, Future) else m
    if isinstance(m, _ForDevice):
        from kernels.cuda.packing import upload_form

        return upload_form(m.form, m.qt, m.n, m.k)
    return m


def _build(ld: _Loader) -> Weights:
    f, cfg = ld.f, ld.cfg
    e, hd = cfg.n_embd, cfg.head_dim
    nq, nkv = cfg.n_head * hd, cfg.n_head_kv * hd
    embd, embd_type = ld.raw("token_embd.weight", e, cfg.n_vocab)
    ld.device = ld.gpu_output
    # gemma2's head is token_embd, always; qwen2moe's, olmo2's and gpt-oss's is their own, always
    # (llama.cpp requires it)
    if ("output.weight" in f.tensors or cfg.arch in ("qwen2moe", "olmo2", "gpt-oss")) and cfg.arch != "gemma2":
        (output,) = ld.matrices(["output.weight"], e, [cfg.n_vocab])
    else:  # tied head
        (output,) = ld.matrices(["token_embd.weight"], e, [cfg.n_vocab])
    layers = []
    for i in range(cfg.n_layer):
        p = f"blk.{i}."
        ld.device = i < ld.n_gpu
        if p + "attn_qkv.weight" in f.tensors:  # Q, K, V fused in the file (phi3; llama.cpp takes it for any arch)
            wqkv = ld.matrices([p + "attn_qkv.weight"], e, [nq + 2 * nkv])
        else:
            wqkv = ld.matrices([p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"], e, [nq, nkv, nkv])
        moe, wdown = None, None
        if cfg.n_expert:
            moe, wgate_up = load_moe(ld, p, cfg), []
        elif cfg.arch == "phi3":  # ffn_up holds [gate; up], as llama.cpp's SwiGLU splits it
            wgate_up = ld.matrices([p + "ffn_up.weight"], e, [2 * cfg.n_ff])
        else:
            wgate_up = ld.matrices([p + "ffn_gate.weight", p + "ffn_up.weight"], e, [cfg.n_ff, cfg.n_ff])
        if not cfg.n_expert:
            wdown = ld.matrices([p + "ffn_down.weight"], cfg.n_ff, [e])[0]
        bias = None
        if cfg.qkv_bias:
            bias = np.concatenate([ld.vector(p + "attn_q.bias", nq), ld.vector(p + "attn_k.bias", nkv),
                                   ld.vector(p + "attn_v.bias", nkv)])
        qn, kn = (nq, nkv) if cfg.qk_norm_full else (hd, hd)
        # gpt-oss's post_attention_norm is the FFN's pre-norm (llama.cpp applies it to attention's residual sum)
        ffn_norm = "post_attention_norm.weight" if cfg.arch == "gpt-oss" else "ffn_norm.weight"
        layers.append(Layer(
            attn_norm=ld.vector(p + "attn_norm.weight", e) if cfg.pre_norms else None,
            wqkv=wqkv,
            bqkv=bias,
            q_norm=ld.vector(p + "attn_q_norm.weight", qn) if cfg.qk_norm else None,
            k_norm=ld.vector(p + "attn_k_norm.weight", kn) if cfg.qk_norm else None,
            wo=ld.matrices([p + "attn_output.weight"], nq, [e])[0],
            post_attn_norm=ld.vector(p + "post_attention_norm.weight", e) if cfg.post_norms else None,
            ffn_norm=ld.vector(p + ffn_norm, e) if cfg.pre_norms else None,
            wgate_up=wgate_up,
            wdown=wdown,
            post_ffn_norm=ld.vector(p + "post_ffw_norm.weight", e) if cfg.post_norms else None,
            moe=moe,
            bo=ld.vector(p + "attn_output.bias", e) if cfg.attn_out_bias else None,
            sinks=ld.vector(p + "attn_sinks.weight", cfg.n_head) if cfg.attn_sinks else None,
        ))
    # llama3 RoPE scaling: one table of per-pair divisors, which llama.cpp reads for llama only
    # (other architectures refuse it as an unused tensor).
    freqs = ld.vector("rope_freqs.weight", cfg.rope_dims // 2, optional=True) if cfg.arch == "llama" else None
    # longrope (Phi-3 128k): two such tables, each optional as in llama.cpp, read for phi3 only
    # (llama.cpp also reads them for llama and others: refused there as unused tensors).
    lr = [ld.vector(f"rope_factors_{k}.weight", cfg.rope_dims // 2, optional=True) if cfg.arch == "phi3" else None
          for k in ("long", "short")]
    return Weights(embd, embd_type, ld.vector("output_norm.weight", e), output, layers, freqs, *lr)
