"""The offloaded part of the forward pass: layers 0 .. n_gpu-1, and the head when placed there.

Device buffers are allocated once for up to max_tokens tokens. Per forward, the embedded
tokens, positions and the RoPE tables go up once; the residual stream comes back only when
CPU layers follow or the head runs on the CPU; otherwise only the wanted logits (and
embedding rows) come back. Each layer is the CPU `layer()` in the same order, as launches of
kernels.cuda kernels (twins of the CPU ones), fused where a GPU pays per launch: the Q/K/V
split, norms, RoPE and cache store are one launch (kernels.cuda.heads), each residual add
shares a launch with the norm before and after it, and decode tokens of many sequences share
one attention launch. A decode layer is 9 launches (llama, fused matrices; counted in the
simulator) whatever the number of sequences; the step adds 4 (first norm, head).
"""

from __future__ import annotations

import numpy as np

from kernels.cuda import activation as act
from kernels.cuda import launch
from kernels.cuda.attention import attention, attention_batch, new_scratch
from kernels.cuda.hadamard import hadamard
from kernels.cuda.heads import heads
from kernels.cuda.norm import residual, rms_norm
from kernels.cuda.qmatmul import matmul
from kernels.cuda.sampling import TOP_K_MAX, new_work, top_k_host
from service.model.config import ModelConfig
from service.model.kvcache import KVCache
from service.model.logits import HostLogits, Logits
from service.model.placement import Placement
from service.model.weights import Weights


class Offload:
    def __init__(self, cfg: ModelConfig, w: Weights, cache: KVCache, place: Placement, max_tokens: int):
        from numba import cuda

        self.cfg, self.w, self.cache, self.place = cfg, w, cache, place
        c, t = cfg, max_tokens
        nq, nkv = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
        zeros = lambda *shape: cuda.device_array(shape, np.float32)  # noqa: E731
        self.x, self.h = zeros(t, c.n_embd), zeros(t, c.n_embd)
        self.qkv = zeros(t, nq + 2 * nkv)
        self.q, self.att = zeros(t, nq), zeros(t, nq)  # keys and values go straight to the cache
        self.gu, self.ff = zeros(t, 2 * c.n_ff), zeros(t, c.n_ff)
        half = c.rope_dims // 2
        self.cos, self.sin = zeros(2, t, half), zeros(2, t, half)
        self.pos = cuda.device_array(t, np.int32)
        self.seq = cuda.device_array(t, np.int32)
        self.none = cuda.device_array(0, np.float32)  # an absent norm weight
        # Decode-kernel scores: it serves runs of one-token segments (at most one per sequence)
        # and segments shorter than the prefill threshold; max_tokens rows would cost
        # max_batch * n_head * n_ctx floats (268 MB for Gemma 3 at 32k context).
        self.scratch = new_scratch(min(t, max(cache.n_seq, launch.ATTN_PREFILL_MIN_TOKENS)), c.n_head, cache.n_ctx)
        up = lambda v: None if v is None else cuda.to_device(np.ascontiguousarray(v, np.float32))  # noqa: E731
        self.vecs = [{name: up(getattr(L, name)) for name in _VECTORS} for L in w.layers[: place.n_gpu]]
        if place.output_on_gpu:
            self.out_norm = up(w.output_norm)
            self.rows = cuda.device_array(t, np.int64)
            self.sel, self.hf = zeros(t, c.n_embd), zeros(t, c.n_embd)
            self.logits = zeros(min(t, max(1, cache.n_seq)), c.n_vocab)  # grows when more rows are wanted
            self.work = new_work()  # device top-k scratch (see DeviceLogits)

    def layers(self, x: np.ndarray, seq: np.ndarray, pos: np.ndarray, segs: np.ndarray, cos: np.ndarray,
               sin: np.ndarray) -> None:
        """Run the offloaded layers on x (n, n_embd); x is updated when the CPU needs it next.

        seq, pos int32 (n,); segs (n_seg, 3) (sequence, first, end) runs of one sequence;
        cos, sin (2, n, rope_dims // 2): the global and sliding-window RoPE tables."""
        n = x.shape[0]
        self.x[:n].copy_to_device(x)
        self.pos[:n].copy_to_device(pos)
        self.seq[:n].copy_to_device(np.ascontiguousarray(seq, np.int32))
        for i in range(2 if self.cfg.sliding_window else 1):  # the window's own table only when used
            self.cos[i, :n].copy_to_device(np.ascontiguousarray(cos[i]))
            self.sin[i, :n].copy_to_device(np.ascontiguousarray(sin[i]))
        rms_norm(self.h[:n], self.x[:n], self.vecs[0]["attn_norm"], self.cfg.norm_eps)  # later: in _layer
        runs = _runs(segs)
        for li in range(self.place.n_gpu):
            self._layer(li, n, runs)
        if self.place.n_gpu < self.cfg.n_layer or not self.place.output_on_gpu:
            self.x[:n].copy_to_host(x)

    def head(self, rows: np.ndarray, hidden_rows: np.ndarray) -> tuple[Logits, np.ndarray]:
        """(logits (len(rows), n_vocab), final-norm hidden states float32 (len(hidden_rows), n_embd)):
        the logits stay on the device as DeviceLogits (valid until the next forward), the hidden
        states come to the host."""
        c = self.cfg
        hidden = np.zeros((0, c.n_embd), np.float32)
        if len(hidden_rows):
            hidden = self._normed(hidden_rows).copy_to_host()
        if not len(rows):
            return HostLogits(np.zeros((0, c.n_vocab), np.float32)), hidden
        hf = self._normed(rows)
        r = len(rows)
        if self.logits.shape[0] < r:  # rare: more wanted rows than sequences (e.g. logits of a whole prompt)
            from numba import cuda

            self.logits = cuda.device_array((r, c.n_vocab), np.float32)
        logits = self.logits[:r]
        matmul(logits, hf, self.w.output)
        if c.final_softcap > 0:
            act.scale_cap(logits, logits, 1.0, c.final_softcap)
        return DeviceLogits(logits, self.work), hidden

    def _normed(self, rows: np.ndarray):
        r = len(rows)
        self.rows[:r].copy_to_device(np.ascontiguousarray(rows, np.int64))
        act.gather_rows(self.sel[:r], self.x, self.rows[:r])
        rms_norm(self.hf[:r], self.sel[:r], self.out_norm, self.cfg.norm_eps)
        return self.hf[:r]

    def _layer(self, li: int, n: int, runs: list[tuple[int, int, int, int]]) -> None:
        """x += attention(h); x += ffn(...) for layer li; h arrives as norm(x) and leaves as the
        next offloaded layer's norm(x) (the CPU layer() launch by launch, fused)."""
        c, L, vec = self.cfg, self.w.layers[li], self.vecs[li]
        hd, n_head = c.head_dim, c.n_head
        x, h, qkv = self.x[:n], self.h[:n], self.qkv[:n]
        swa = int(bool(c.swa_layers[li]))
        col = 0
        for m in L.wqkv:
            matmul(qkv[:, col : col + m.n], h, m)
            col += m.n
        if vec["bqkv"] is not None:
            act.add_bias(qkv, vec["bqkv"])
        q3 = self.q[:n].reshape(n, n_head, hd)
        cache = self.cache
        kc, vc = cache.k[li], cache.v[li]  # (n_seq, n_kv, n_ctx, width), of the cache types
        kh, vh = cache.k_half[li], cache.v_half[li]  # their float16 views (quantized types)
        types = (cache.type_k, cache.type_v)
        heads(q3, kc, vc, qkv, self.seq[:n], self.pos[:n], self.cos[swa, :n], self.sin[swa, :n],
              self._v(vec["q_norm"]), self._v(vec["k_norm"]), c.norm_eps, c.rope_dims, c.rope_neox, types, (kh, vh))
        att3 = self.att[:n].reshape(n, n_head, hd)
        window = c.sliding_window if swa else 0
        for seq, s0, s1, single in runs:
            if single:  # consecutive one-token segments (decode): one launch for all their sequences
                attention_batch(att3[s0:s1], q3[s0:s1], kc, vc, self.seq[s0:s1], self.pos[s0:s1], c.attn_scale,
                                window, c.attn_softcap, self.scratch, types, (kh, vh))
            else:
                p0 = int(cache.length[seq])  # lengths are updated after the forward
                attention(att3[s0:s1], q3[s0:s1], kc[seq], vc[seq], self.pos[s0:s1], p0 + s1 - s0, c.attn_scale,
                          window, c.attn_softcap, self.scratch, types=types, halves=(kh[seq], vh[seq]))
        if cache.rot_v:  # values were stored rotated (kernels.hadamard): turn the output back
            hadamard(self.att[:n].reshape(n * n_head, hd), cache.rot_v)
        matmul(h, self.att[:n], L.wo)
        residual(h, x, h, self._v(vec["post_attn_norm"]), vec["ffn_norm"], c.norm_eps)
        gu, col = self.gu[:n], 0
        for m in L.wgate_up:
            matmul(gu[:, col : col + m.n], h, m)
            col += m.n
        (act.geglu if c.gelu else act.swiglu)(self.ff[:n], gu[:, : c.n_ff], gu[:, c.n_ff :])
        matmul(h, self.ff[:n], L.wdown)
        last = li + 1 == self.place.n_gpu
        residual(h, x, h, self._v(vec["post_ffn_norm"]), self.none if last else self.vecs[li + 1]["attn_norm"],
                 c.norm_eps)

    def _v(self, v):
        return self.none if v is None else v


class DeviceLogits:
    """Logits (R, n_vocab) left on the device, with service.model.logits' interface: a row comes
    to the host when asked for, or only its k most likely tokens through top_k (k values instead
    of n_vocab: what the sampler needs when Sampler.top_k_first allows). Valid until the next
    forward pass reuses the buffer."""

    max_k = TOP_K_MAX

    def __init__(self, d, work):
        self.d, self.work = d, work
        self.shape = tuple(d.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def row(self, i: int) -> np.ndarray:
        return self.d[i].copy_to_host()

    def host(self) -> np.ndarray:
        return self.d.copy_to_host()

    def top_k(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int32, logits float32) of row i's k largest, descending, ties by lower id."""
        return top_k_host(self.d[i], self.shape[1], k, self.work)


def _runs(segs: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(sequence, first, end, single) per attention launch: consecutive one-token segments merge."""
    out: list[tuple[int, int, int, int]] = []
    for seq, s0, s1 in segs.tolist():
        if s1 - s0 == 1 and out and out[-1][3] and out[-1][2] == s0:
            out[-1] = (out[-1][0], out[-1][1], s1, 1)
        else:
            out.append((seq, s0, s1, int(s1 - s0 == 1)))
    return out


_VECTORS = ("attn_norm", "bqkv", "q_norm", "k_norm", "post_attn_norm", "ffn_norm", "post_ffn_norm")
