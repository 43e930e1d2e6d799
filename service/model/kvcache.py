"""The KV cache: one slice per sequence, allocated once for the configured context, keys and
values each in their cache type (-ctk / -ctv: kernels.kv_types).

Layout per layer: k, v (n_seq, n_kv_head, n_ctx, width) of the type's storage dtype (float32,
uint16 half / bfloat16 bits, or uint8 ggml blocks: a row is one token's head_dim values for
one head, whole blocks for the quantized types), so each (sequence, head) is one contiguous
run of rows. A sequence's cache holds positions 0 .. length-1; `keep` drops everything after
the first n (prompt-cache reuse), `clear` forgets it, `copy` duplicates one sequence into
another, `shift` drops a run of positions and moves the rest down (context shift).
CPU layers are read through `refs` (kernels.kv_dequant's (type, f, h, b) tuples: one
compiled layer serves every type). Layers offloaded to the GPU (the first n_gpu) keep their
cache in device memory, same layout (f16 as float16 there, quantized rows with a float16 view
of their bytes in `k_half` / `v_half` for the block scales); `read`/`write` move a sequence's
stored rows to and from the host (slot save/restore, the RAM prompt cache), in the cache's
types: `convert` changes the type of such rows. Block-type rows hold their values turned by
llama.cpp's Walsh-Hadamard rotation when head_dim % 64 == 0 (kernels.hadamard; rot_k, rot_v).
"""

from __future__ import annotations

import mmap

import numpy as np

from kernels import kv_types as kt
from kernels.hadamard import rot_sizes
from kernels.kv_dequant import cache_ref
from service.model.config import ModelConfig

# The cache types a Model gets when its caller names none: f32, unless the server set its own
# (service.cli: -ctk / -ctv, whose default is llama-server's f16).
DEFAULT_TYPES: list[str] = ["f32", "f32"]


def set_default_types(type_k: str, type_v: str) -> None:
    kt.type_id(type_k), kt.type_id(type_v)  # llama-server's error for a name it does not know
    DEFAULT_TYPES[:] = [type_k, type_v]


def _zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Zeroed memory that is only resident where written.

    Why not np.zeros: with transparent huge pages, writing one key of a sequence faults in
    a whole 2 MB page of each (layer, sequence) slice; 8 sequences of 16 tokens cost 480 MB
    of RSS on SmolLM2 (measured). Anonymous memory marked MADV_NOHUGEPAGE grows 4 KB at a time.
    """
    count = int(np.prod(shape))
    buf = mmap.mmap(-1, max(count * np.dtype(dtype).itemsize, 1))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, dtype, count).reshape(shape)


def _device_dtype(t: int):
    return np.float16 if t == kt.F16 else kt.storage_dtype(t)


class KVCache:
    def __init__(self, cfg: ModelConfig, n_ctx: int, n_seq: int, n_gpu: int = 0,
                 types: tuple[str, str] = ("f32", "f32")):
        if n_ctx <= 0 or n_seq <= 0:
            raise ValueError(f"KV cache needs n_ctx > 0 and n_seq > 0, got {n_ctx}, {n_seq}")
        self.cfg, self.n_ctx, self.n_seq, self.n_gpu = cfg, n_ctx, n_seq, n_gpu
        self.type_names = (types[0], types[1])
        self.type_k, self.type_v = kt.type_id(types[0]), kt.type_id(types[1])
        for t, which in ((self.type_k, "K"), (self.type_v, "V")):
            err = kt.head_dim_error(t, cfg.head_dim, which)
            if err:
                raise ValueError(err)
        self.k = [self._alloc(li, self.type_k) for li in range(cfg.n_layer)]
        self.v = [self._alloc(li, self.type_v) for li in range(cfg.n_layer)]
        self.k_half = [self._half(a, self.type_k) for a in self.k]
        self.v_half = [self._half(a, self.type_v) for a in self.v]
        self.refs = [(cache_ref(self.type_k, k), cache_ref(self.type_v, v)) if li >= n_gpu else None
                     for li, (k, v) in enumerate(zip(self.k, self.v))]
        self.length = np.zeros(n_seq, np.int64)  # tokens cached per sequence
        # llama.cpp's rotation of block-type rows (kernels.hadamard): chunk sizes, 0 for none
        self.rot_k, self.rot_v = rot_sizes(self.type_k, self.type_v, cfg.head_dim)

    def _alloc(self, li: int, t: int):
        shape = (self.n_seq, self.cfg.n_head_kv, self.n_ctx, kt.row_width(t, self.cfg.head_dim))
        if li < self.n_gpu:  # uninitialised: positions past a sequence's length are never read
            from numba import cuda

            return cuda.device_array(shape, _device_dtype(t))
        return _zeros(shape, kt.storage_dtype(t))

    def _half(self, a, t: int):
        """The device kernels' float16 view of quantized rows (their block scales); else a itself."""
        if not kt.is_quantized(t) or isinstance(a, np.ndarray):
            return a
        return a.view(np.float16)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k) + sum(a.nbytes for a in self.v)

    @property
    def bytes_per_token(self) -> int:
        """Bytes one cached token takes over all layers and kv heads, keys and values."""
        c = self.cfg
        return c.n_layer * c.n_head_kv * (kt.row_bytes(self.type_k, c.head_dim) + kt.row_bytes(self.type_v, c.head_dim))

    def keep(self, seq: int, n: int) -> None:
        """Keep the first n positions of a sequence (the rest will be overwritten)."""
        self.length[seq] = min(int(self.length[seq]), max(0, n))

    def clear(self, seq: int) -> None:
        self.length[seq] = 0

    def copy(self, src: int, dst: int, n: int | None = None) -> None:
        """Sequence dst becomes the first n positions of src (default: all of src)."""
        n = int(self.length[src]) if n is None else min(n, int(self.length[src]))
        for li, (k, v) in enumerate(zip(self.k, self.v)):
            if li < self.n_gpu:  # device to device, one contiguous (head, n, width) run at a time
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
        re-evaluating the kept tokens instead would cost a forward pass over all of them. Keys of
        another type than f32 are turned in float32 and stored again in their type (llama.cpp casts
        quantized keys the same way); values only move, row by row."""
        from kernels.hadamard import fwht_rows
        from kernels.kv_quant import dequantize_rows, quantize_rows

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
            kh, vh = self._get(k, li, seq, src0, n), self._get(v, li, seq, src0, n)
            kf = dequantize_rows(kh, self.type_k)  # (n_kv, n_move, head_dim) float32, a new array
            if self.rot_k:  # back from the rotation of block-type keys, and forward again after
                fwht_rows(kf.reshape(-1, c.head_dim), self.rot_k)
            if not (c.nope_layers and c.nope_layers[li]):  # keys of a layer without RoPE were never turned
                _unrotate(kf, n_discard, c.rope_dims, c.rope_neox, base, scale)
            if self.rot_k:
                fwht_rows(kf.reshape(-1, c.head_dim), self.rot_k)
            self._put(k, li, seq, n_keep, quantize_rows(kf, self.type_k))
            self._put(v, li, seq, n_keep, vh)
        self.length[seq] = n_keep + n_move

    def _get(self, a, li: int, seq: int, lo: int, hi: int) -> np.ndarray:
        """Host copy of rows [lo, hi) of every head of a sequence: (n_kv, hi - lo, width), host storage dtype."""
        if li < self.n_gpu:  # through the host: rare, and small next to a forward pass
            rows = np.stack([a[seq, g, lo:hi].copy_to_host() for g in range(a.shape[1])])
            return rows.view(np.uint16) if rows.dtype == np.float16 else rows
        return a[seq, :, lo:hi].copy()

    def _put(self, a, li: int, seq: int, lo: int, rows: np.ndarray) -> None:
        """Rows [lo, lo + n) of every head of a sequence <- rows (n_kv, n, width) in the host storage dtype."""
        n = rows.shape[1]
        if li < self.n_gpu:
            if a.dtype == np.float16:
                rows = rows.view(np.float16)
            for g in range(a.shape[1]):
                a[seq, g, lo : lo + n].copy_to_device(np.ascontiguousarray(rows[g]))
        else:
            a[seq, :, lo : lo + n] = rows

    def read(self, seq: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Host copies of the first n positions as stored: k, v (n_layer, n_kv_head, n, width) in the
        storage dtypes of type_k and type_v."""
        return (np.stack([self._get(a, li, seq, 0, n) for li, a in enumerate(self.k)]),
                np.stack([self._get(a, li, seq, 0, n) for li, a in enumerate(self.v)]))

    def write(self, seq: int, k: np.ndarray, v: np.ndarray) -> None:
        """Set the first n positions from host rows k, v (n_layer, n_kv_head, n, width) stored in this
        cache's types (read()'s form; see convert()); length becomes n."""
        for rows, t in ((k, self.type_k), (v, self.type_v)):
            want = (len(self.k), self.cfg.n_head_kv, rows.shape[2], kt.row_width(t, self.cfg.head_dim))
            if rows.dtype != kt.storage_dtype(t) or rows.shape != want:
                raise ValueError(f"KV rows {rows.dtype}{list(rows.shape)} are not {kt.TYPE_NAMES[t]} rows {want}")
        for li in range(len(self.k)):
            self._put(self.k[li], li, seq, 0, k[li])
            self._put(self.v[li], li, seq, 0, v[li])
        self.length[seq] = k.shape[2]


def convert(rows: np.ndarray, src: int, dst: int, head_dim: int, values: bool) -> np.ndarray:
    """Stored key (or, values=True, value) rows (..., width) of cache type src as rows of type dst:
    through float32 (to f32 from any type, or to the same type, nothing is lost), out of src's
    rotation (kernels.hadamard) and into dst's."""
    if src == dst:
        return rows
    from kernels.hadamard import fwht_rows
    from kernels.kv_quant import dequantize_rows, quantize_rows

    x = dequantize_rows(rows, src)
    n_src = rot_sizes(src, src, head_dim)[int(values)]
    n_dst = rot_sizes(dst, dst, head_dim)[int(values)]
    if n_src != n_dst:
        flat = x.reshape(-1, head_dim)
        if n_src:
            fwht_rows(flat, n_src)
        if n_dst:
            fwht_rows(flat, n_dst)
    return quantize_rows(x, dst)


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
