"""The KV cache: one slice per sequence, allocated once for the configured context.

Layout per layer: k, v float32 (n_seq, n_kv_head, n_ctx, head_dim), so each (sequence,
head) is one contiguous block of keys, as kernels.attention reads it. A sequence's cache
holds positions 0 .. length-1; `keep` drops everything after the first n (prompt-cache
reuse), `clear` forgets it, `copy` duplicates one sequence into another, `shift` drops a run
of positions and moves the rest down (context shift).
Layers offloaded to the GPU (the first n_gpu) keep their cache in device memory, same layout;
`read`/`write` move a sequence's keys and values to and from the host (slot save/restore).
"""

from __future__ import annotations

import mmap

import numpy as np

from service.model.config import ModelConfig


def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    """Zeroed float32 memory that is only resident where written.

    Why not np.zeros: with transparent huge pages, writing one key of a sequence faults in
    a whole 2 MB page of each (layer, sequence) slice; 8 sequences of 16 tokens cost 480 MB
    of RSS on SmolLM2 (measured). Anonymous memory marked MADV_NOHUGEPAGE grows 4 KB at a time.
    """
    n = int(np.prod(shape)) * 4
    buf = mmap.mmap(-1, max(n, 1))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, np.float32, int(np.prod(shape))).reshape(shape)


def _device(shape: tuple[int, ...]):
    """Uninitialised device memory: positions past a sequence's length are never read."""
    from numba import cuda

    return cuda.device_array(shape, np.float32)


class KVCache:
    def __init__(self, cfg: ModelConfig, n_ctx: int, n_seq: int, n_gpu: int = 0):
        if n_ctx <= 0 or n_seq <= 0:
            raise ValueError(f"KV cache needs n_ctx > 0 and n_seq > 0, got {n_ctx}, {n_seq}")
        self.cfg, self.n_ctx, self.n_seq, self.n_gpu = cfg, n_ctx, n_seq, n_gpu
        shape = (n_seq, cfg.n_head_kv, n_ctx, cfg.head_dim)
        alloc = lambda li: _device(shape) if li < n_gpu else _zeros(shape)  # noqa: E731
        self.k = [alloc(li) for li in range(cfg.n_layer)]
        self.v = [alloc(li) for li in range(cfg.n_layer)]
        self.length = np.zeros(n_seq, np.int64)  # tokens cached per sequence

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k) + sum(a.nbytes for a in self.v)

    def keep(self, seq: int, n: int) -> None:
        """Keep the first n positions of a sequence (the rest will be overwritten)."""
        self.length[seq] = min(int(self.length[seq]), max(0, n))

    def clear(self, seq: int) -> None:
        self.length[seq] = 0

    def copy(self, src: int, dst: int) -> None:
        n = int(self.length[src])
        for li, (k, v) in enumerate(zip(self.k, self.v)):
            if li < self.n_gpu:  # device to device, one contiguous (head, n, head_dim) run at a time
                for g in range(k.shape[1]):
                    k[dst, g, :n].copy_to_device(k[src, g, :n])
                    v[dst, g, :n].copy_to_device(v[src, g, :n])
            else:
                k[dst, :, :n] = k[src, :, :n]
                v[dst, :, :n] = v[src, :, :n]
        self.length[dst] = n

    def shift(self, seq: int, n_keep: int, n_discard: int) -> None:
        """Drop positions [n_keep, n_keep + n_discard) of a sequence; the later ones move down by
        n_discard, and their keys, stored already rotated for their old positions, turn back by
        n_discard positions' worth of RoPE angle (a rotation composes: rotating by theta(p) and then
        by theta(-d) is rotating by theta(p - d), up to float rounding). This is llama.cpp's K-shift;
        re-evaluating the kept tokens instead would cost a forward pass over all of them."""
        n = int(self.length[seq])
        src0, n_move = n_keep + n_discard, n - n_keep - n_discard
        if n_discard <= 0 or n_move < 0:
            raise ValueError(f"sequence {seq}: cannot drop {n_discard} positions after {n_keep} of {n}")
        c = self.cfg
        for li, (k, v) in enumerate(zip(self.k, self.v)):
            if c.sliding_window and c.swa_layers[li]:
                base, scale = c.rope_base_swa, c.rope_scale_swa
            else:
                base, scale = c.rope_base, c.rope_scale
            if li < self.n_gpu:  # through the host: a shift is rare, and small next to a forward pass
                kh = np.stack([k[seq, g, src0:n].copy_to_host() for g in range(k.shape[1])])
                vh = np.stack([v[seq, g, src0:n].copy_to_host() for g in range(v.shape[1])])
            else:
                kh, vh = k[seq, :, src0:n].copy(), v[seq, :, src0:n].copy()
            _unrotate(kh, n_discard, c.rope_dims, c.rope_neox, base, scale)
            if li < self.n_gpu:
                for g in range(k.shape[1]):
                    k[seq, g, n_keep : n_keep + n_move].copy_to_device(np.ascontiguousarray(kh[g]))
                    v[seq, g, n_keep : n_keep + n_move].copy_to_device(np.ascontiguousarray(vh[g]))
            else:
                k[seq, :, n_keep : n_keep + n_move] = kh
                v[seq, :, n_keep : n_keep + n_move] = vh
        self.length[seq] = n_keep + n_move

    def read(self, seq: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Host copies of the first n positions: k, v (n_layer, n_kv_head, n, head_dim)."""
        def one(a, li):
            if li < self.n_gpu:
                return np.stack([a[seq, g, :n].copy_to_host() for g in range(a.shape[1])])
            return a[seq, :, :n]
        return (np.stack([one(a, li) for li, a in enumerate(self.k)]),
                np.stack([one(a, li) for li, a in enumerate(self.v)]))

    def write(self, seq: int, k: np.ndarray, v: np.ndarray) -> None:
        """Set the first n positions from host k, v (n_layer, n_kv_head, n, head_dim); length becomes n."""
        n = k.shape[2]
        for li in range(len(self.k)):
            for dst, src in ((self.k[li], k[li]), (self.v[li], v[li])):
                if li < self.n_gpu:
                    for g in range(dst.shape[1]):
                        dst[seq, g, :n].copy_to_device(np.ascontiguousarray(src[g]))
                else:
                    dst[seq, :, :n] = src
        self.length[seq] = n


def _unrotate(k: np.ndarray, d: int, n_dims: int, neox: bool, base: float, scale: float) -> None:
    """Turn keys k (n_head_kv, n, head_dim), in place, back by d positions of RoPE."""
    from kernels.rope import rope_apply, rope_cache

    half = n_dims // 2
    cos = np.empty((1, half), np.float32)
    sin = np.empty((1, half), np.float32)
    rope_cache(cos, sin, np.array([-d], np.int32), n_dims, base, scale)
    flat = np.ascontiguousarray(k.reshape(1, -1, k.shape[-1]))  # one "token": every key turns by the same angle
    rope_apply(flat, cos, sin, n_dims, neox)
    k[:] = flat.reshape(k.shape)
