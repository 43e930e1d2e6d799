"""The `mlp` projector type (LLaVA 1.5 style): a CLIP ViT and a two-layer MLP, as llama.cpp's clip graph
for llava runs it, and its encoder.

Graph: conv patch embedding (+ bias when the file has one; the patches are rounded to F16 first when the
conv weight is F16, as ggml's im2col for an F16 kernel); the class embedding (v.class_embd, optional) is
appended after the patch rows, not before them; learned position embeddings for rows 0..n; the
pre-LayerNorm (optional); the first n_layer - 1 blocks (llama.cpp feeds the projector from the
second-to-last layer; a file naming clip.vision.feature_layer, as granite's, is refused); the
post-LayerNorm (optional); rows 1..n_patch (with a class row: llama.cpp skips row 0, which is the first
patch, and keeps the class row last; without one, rows 0..n_patch-1); mm.0 -> GELU (tanh) -> mm.2.
The blocks' MLP activation is GELU (tanh) when clip.use_gelu is set, else quick GELU (CLIP's).

Images are fitted into the square with Pillow-compatible bicubic resampling on (122, 116, 104) padding,
and take no begin/end marker tokens in the prompt; the text model attends to them causally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kernels.activation import gelu_tanh
from kernels.vision import gelu_quick, im2col_patches, layer_norm, linear
from service.vision.encoder import VisionEncoder
from service.vision.mmproj import MmprojError, VisionBlock, is_f16, read_blocks, tensor


@dataclass
class LlavaModel:
    path: str
    projector: str  # "mlp"
    image_size: int
    patch_size: int
    n_embd: int  # E
    n_head: int
    eps: float
    mean: np.ndarray  # float32 (3,)
    std: np.ndarray
    quick_gelu: bool  # the blocks' MLP activation: quick GELU (else GELU, tanh form)
    n_embd_text: int
    patch_w: np.ndarray  # float32 (E, 3*P*P)
    patch_b: np.ndarray  # float32 (E,) (zeros when the file has none)
    patch_f16: bool
    class_embd: np.ndarray  # float32 (E,) or empty
    pos_embd: np.ndarray  # float32 (n_pos, E): n_patch rows, plus one with a class embedding
    pre_ln_w: np.ndarray  # float32 (E,) or empty
    pre_ln_b: np.ndarray
    blocks: list[VisionBlock]  # the blocks that run: n_layer - 1 of the file's
    post_ln_w: np.ndarray  # float32 (E,) or empty
    post_ln_b: np.ndarray
    mm0_w: np.ndarray  # float32 (H, E)
    mm0_b: np.ndarray  # float32 (H,)
    mm0_f16: bool
    mm2_w: np.ndarray  # float32 (n_embd_text, H)
    mm2_b: np.ndarray
    mm2_f16: bool
    resample: ClassVar[str] = "bicubic"
    pad_color: ClassVar[tuple[int, int, int]] = (122, 116, 104)
    markers: ClassVar[tuple[str, str] | None] = None  # no begin/end tokens around the rows
    non_causal: ClassVar[bool] = False

    @property
    def n_patch_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def n_tokens(self) -> int:
        """Embedding rows per image: one per patch."""
        return self.n_patch_side ** 2


def load_llava(f, path: str, n_embd_text: int) -> LlavaModel:
    """The `mlp` projector of the opened GGUF f (service.vision.mmproj.load_mmproj checked the type)."""
    md = f.metadata

    def need(key: str):
        if key not in md:
            raise MmprojError(f"{path}: missing metadata {key!r}")
        return md[key]

    def t(name: str, required: bool = True) -> np.ndarray:
        return tensor(f, path, name, required)

    if md.get("clip.use_silu", False):
        raise MmprojError(f"{path}: SiLU vision encoders are not supported for mlp projectors")
    for key in ("clip.vision.feature_layer", "clip.vision.image_grid_pinpoints"):
        if key in md:
            raise MmprojError(f"{path}: {key} (LLaVA 1.6 / granite style) is not supported for mlp projectors")
    for name in ("mm.1.weight", "mm.3.weight", "v.image_newline"):
        if name in f.tensors:
            raise MmprojError(f"{path}: tensor {name!r} (another llava variant) is not supported")
    size, p, e = int(need("clip.vision.image_size")), int(need("clip.vision.patch_size")), \
        int(need("clip.vision.embedding_length"))
    if size % p or size // p < 1:
        raise MmprojError(f"{path}: image size {size} is not a multiple of the patch size {p}")
    n_layer = int(need("clip.vision.block_count"))
    if n_layer < 1:
        raise MmprojError(f"{path}: no vision blocks")
    patch_w = t("v.patch_embd.weight")
    if patch_w.shape != (e, 3, p, p):
        raise MmprojError(f"{path}: v.patch_embd.weight has shape {patch_w.shape}, expected {(e, 3, p, p)}")
    pb = t("v.patch_embd.bias", required=False)
    cls = t("v.class_embd", required=False).reshape(-1)
    n_pos = (size // p) ** 2 + (1 if cls.size else 0)
    pos = t("v.position_embd.weight")
    if pos.shape != (n_pos, e):
        raise MmprojError(f"{path}: v.position_embd.weight has shape {pos.shape}, expected {(n_pos, e)}")
    mm0, mm2 = t("mm.0.weight"), t("mm.2.weight")
    if mm0.shape[1] != e or mm2.shape[1] != mm0.shape[0]:
        raise MmprojError(f"{path}: mm.0.weight {mm0.shape} and mm.2.weight {mm2.shape} do not chain from {e}")
    if mm2.shape[0] != n_embd_text:
        raise MmprojError(f"{path}: mm.2.weight maps to {mm2.shape[0]}, but the text model is {n_embd_text} "
                          f"wide: this projector belongs to another model")
    return LlavaModel(
        path, "mlp", size, p, e, int(need("clip.vision.attention.head_count")),
        float(need("clip.vision.attention.layer_norm_epsilon")),
        np.asarray(need("clip.vision.image_mean"), np.float32), np.asarray(need("clip.vision.image_std"), np.float32),
        not md.get("clip.use_gelu", False), n_embd_text, np.ascontiguousarray(patch_w.reshape(e, 3 * p * p)),
        pb if pb.size else np.zeros(e, np.float32), is_f16(f, "v.patch_embd.weight"), cls, pos,
        t("v.pre_ln.weight", required=False), t("v.pre_ln.bias", required=False),
        read_blocks(f, path, n_layer - 1, e),
        t("v.post_ln.weight", required=False), t("v.post_ln.bias", required=False),
        mm0, t("mm.0.bias"), is_f16(f, "mm.0.weight"), mm2, t("mm.2.bias"), is_f16(f, "mm.2.weight"))


class LlavaEncoder(VisionEncoder):
    """One preprocessed image -> its n_patch embedding rows for the text model (one image at a time)."""

    def __init__(self, m: LlavaModel):
        self.m = m
        n = m.pos_embd.shape[0]
        self._alloc(n, m)
        hid = m.mm0_w.shape[0]
        self.mid = np.zeros((m.n_tokens, hid), np.float32)
        self.feat = np.zeros((m.n_tokens, m.n_embd), np.float32)
        self.h16 = np.zeros((max(n, self.patches.shape[0]), max(self.h16.shape[1], hid)), np.float16)

    def encode(self, img: np.ndarray) -> np.ndarray:
        """float32 (n_tokens, n_embd_text), a new array, of img (3, S, S) float32 (service.vision.image)."""
        m = self.m
        if img.shape != (3, m.image_size, m.image_size):
            raise ValueError(f"image must be (3, {m.image_size}, {m.image_size}), got {img.shape}")
        n_patch = m.n_tokens
        im2col_patches(self.patches, np.ascontiguousarray(img, np.float32), m.patch_size)
        linear(self.x[:n_patch], self._f16(self.patches, m.patch_f16), m.patch_w, m.patch_b)
        if m.class_embd.size:
            self.x[n_patch] = m.class_embd
        self.x += m.pos_embd
        if m.pre_ln_w.size:
            layer_norm(self.x, self.x, m.pre_ln_w, m.pre_ln_b, m.eps)
        act = gelu_quick if m.quick_gelu else gelu_tanh
        for b in m.blocks:
            self._block(b, m.n_head, m.eps, act)
        if m.post_ln_w.size:
            layer_norm(self.x, self.x, m.post_ln_w, m.post_ln_b, m.eps)
        first = 1 if m.class_embd.size else 0
        self.feat[:] = self.x[first : first + n_patch]
        linear(self.mid, self._f16(self.feat, m.mm0_f16), m.mm0_w, m.mm0_b)
        gelu_tanh(self.mid, self.mid)
        out = np.empty((n_patch, m.n_embd_text), np.float32)
        linear(out, self._f16(self.mid, m.mm2_f16), m.mm2_w, m.mm2_b)
        return out
