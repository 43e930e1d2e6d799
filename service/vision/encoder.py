"""The vision encoder of a gemma3 projector: one preprocessed image -> its embedding rows for the text model.

As llama.cpp's clip graph (siglip + gemma3 projector): conv patch embedding (+ bias) + learned position
embedding; per block LayerNorm -> biased Q/K/V -> non-causal attention -> biased output -> residual,
LayerNorm -> biased up -> GELU -> biased down -> residual; post LayerNorm; average pooling by `merge`
per side; RMS norm times soft_emb_norm; the input projection. Matrices stored F16 in the file get
their inputs rounded to F16 first, as ggml's CPU matmul converts them.

The encoder owns its buffers (one image at a time: callers serialize, see service.vision.media). Its ViT
block (_block) and buffers (_alloc) serve the llava (`mlp`) encoder too (service.vision.llava).
"""

from __future__ import annotations

import numpy as np

from kernels.activation import gelu_tanh
from kernels.norm import rms_norm
from kernels.vision import attention_full, avg_pool_tokens, im2col_patches, layer_norm, linear
from service.vision.mmproj import VisionBlock, VisionModel

_EMPTY = np.zeros(0, np.float32)


class VisionEncoder:
    def __init__(self, m: VisionModel):
        self.m = m
        self._alloc(m.n_patch_side ** 2, m)
        self.pooled = np.zeros((m.n_tokens, m.n_embd), np.float32)
        self.normed = np.zeros((m.n_tokens, m.n_embd), np.float32)

    def _alloc(self, n: int, m) -> None:
        """The buffers of a ViT over n rows (the residual stream and each block's intermediates)."""
        e = m.n_embd
        ff = m.blocks[0].up_w.shape[0] if m.blocks else e
        self.patches = np.zeros((m.n_patch_side ** 2, 3 * m.patch_size ** 2), np.float32)
        self.x = np.zeros((n, e), np.float32)  # residual stream
        self.h = np.zeros((n, e), np.float32)
        self.q = np.zeros((n, e), np.float32)
        self.k = np.zeros((n, e), np.float32)
        self.v = np.zeros((n, e), np.float32)
        self.att = np.zeros((n, e), np.float32)
        self.up = np.zeros((n, ff), np.float32)
        self.act = np.zeros((n, ff), np.float32)
        self.h16 = np.zeros((max(n, self.patches.shape[0]), max(e, ff, self.patches.shape[1])), np.float16)
        self.scores = np.zeros((n, n), np.float32)

    def _block(self, b: VisionBlock, n_head: int, eps: float, act) -> None:
        """One pre-LayerNorm block on the residual stream self.x; act(out, x) is the MLP's activation."""
        n, e = self.x.shape
        hd = e // n_head
        scale = np.float32(1.0 / np.sqrt(hd))
        layer_norm(self.h, self.x, b.ln1_w, b.ln1_b, eps)
        self._f16(self.h, b.f16)
        linear(self.q, self.h, b.q_w, b.q_b)
        linear(self.k, self.h, b.k_w, b.k_b)
        linear(self.v, self.h, b.v_w, b.v_b)
        attention_full(self.att.reshape(n, n_head, hd), self.q.reshape(n, n_head, hd),
                       self.k.reshape(n, n_head, hd), self.v.reshape(n, n_head, hd), self.scores, scale)
        linear(self.h, self._f16(self.att, b.f16), b.o_w, b.o_b)
        self.x += self.h
        layer_norm(self.h, self.x, b.ln2_w, b.ln2_b, eps)
        linear(self.up, self._f16(self.h, b.f16), b.up_w, b.up_b)
        act(self.act, self.up)
        linear(self.h, self._f16(self.act, b.f16), b.down_w, b.down_b)
        self.x += self.h

    def _f16(self, x: np.ndarray, on: bool) -> np.ndarray:
        """x rounded to F16 in place (when the matrix it meets is F16)."""
        if on:
            t = self.h16[: x.shape[0], : x.shape[1]]
            np.copyto(t, x, casting="unsafe")
            np.copyto(x, t, casting="unsafe")
        return x

    def encode(self, img: np.ndarray) -> np.ndarray:
        """float32 (n_tokens, n_embd_text), a new array, of img (3, S, S) float32 (service.vision.image)."""
        m = self.m
        if img.shape != (3, m.image_size, m.image_size):
            raise ValueError(f"image must be (3, {m.image_size}, {m.image_size}), got {img.shape}")
        im2col_patches(self.patches, np.ascontiguousarray(img, np.float32), m.patch_size)
        linear(self.x, self.patches, m.patch_w, m.patch_b)
        self.x += m.pos_embd
        for b in m.blocks:
            self._block(b, m.n_head, m.eps, gelu_tanh)
        if m.post_ln_w.size:
            layer_norm(self.x, self.x, m.post_ln_w, m.post_ln_b, m.eps)
        avg_pool_tokens(self.pooled, self.x, m.n_patch_side, m.merge)
        rms_norm(self.normed, self.pooled, m.soft_norm_w, m.eps)
        out = np.empty((m.n_tokens, m.n_embd_text), np.float32)
        linear(out, self._f16(self.normed, m.proj_f16), m.proj_w, _EMPTY)
        return out
