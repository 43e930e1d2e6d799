"""A multimodal projector (mmproj) GGUF, as llama.cpp's clip loader reads it: the vision encoder's
hyperparameters and weights, as float32 arrays in numpy order.

Projector types built: `gemma3` (SigLIP ViT + average pooling + soft-emb RMS norm + input projection),
`mlp` (LLaVA 1.5 style: CLIP ViT + a two-layer MLP; service.vision.llava). Any other type is refused at
load with a message naming it, so a server never serves a projector it would run wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from gguf import GGMLQuantizationType

from kernels.dequant import dequantize
from service.gguf_reader import GGUFError, read_gguf

SUPPORTED = ("gemma3", "mlp")


class MmprojError(ValueError):
    """A projector file this server cannot use; the message names the file and the reason."""


@dataclass
class VisionBlock:
    ln1_w: np.ndarray  # float32 (E,)
    ln1_b: np.ndarray
    q_w: np.ndarray  # float32 (E, E) out x in
    q_b: np.ndarray  # float32 (E,)
    k_w: np.ndarray
    k_b: np.ndarray
    v_w: np.ndarray
    v_b: np.ndarray
    o_w: np.ndarray
    o_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray
    up_w: np.ndarray  # float32 (FF, E)
    up_b: np.ndarray  # float32 (FF,)
    down_w: np.ndarray  # float32 (E, FF)
    down_b: np.ndarray  # float32 (E,)
    f16: bool  # the matrices were F16 in the file: llama.cpp rounds their inputs to F16 too


@dataclass
class VisionModel:
    path: str
    projector: str  # clip.projector_type
    image_size: int
    patch_size: int
    n_embd: int  # E
    n_head: int
    eps: float
    mean: np.ndarray  # float32 (3,)
    std: np.ndarray  # float32 (3,)
    merge: int  # gemma3: the average-pooling kernel (patches per side per token)
    n_embd_text: int  # the projection's output width: the text model's n_embd
    patch_w: np.ndarray  # float32 (E, 3*P*P): the conv weight, flattened (channel, ky, kx)
    patch_b: np.ndarray  # float32 (E,) (zeros when the file has none)
    pos_embd: np.ndarray  # float32 (n_patch, E)
    blocks: list[VisionBlock]
    post_ln_w: np.ndarray  # float32 (E,) or empty
    post_ln_b: np.ndarray
    soft_norm_w: np.ndarray  # float32 (E,)
    proj_w: np.ndarray  # float32 (n_embd_text, E)
    proj_f16: bool
    # how mtmd prepares and places this projector's images (service.vision.image, service.vision.media)
    resample: ClassVar[str] = "bilinear"  # fit into the square: Pillow-compatible bilinear
    pad_color: ClassVar[tuple[int, int, int]] = (0, 0, 0)
    markers: ClassVar[tuple[str, str] | None] = ("<start_of_image>", "<end_of_image>")
    non_causal: ClassVar[bool] = True  # the text model attends within an image both ways

    @property
    def n_patch_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def n_tokens(self) -> int:
        """Embedding rows per image."""
        return (self.n_patch_side // self.merge) ** 2


def tensor(f, path, name: str, required: bool = True) -> np.ndarray:
    """Tensor `name` of the opened file f as float32 (empty when absent and not required)."""
    if name not in f.tensors:
        if required:
            raise MmprojError(f"{path}: missing tensor {name!r}")
        return np.zeros(0, np.float32)
    info = f.tensors[name]
    raw = f.data(name)
    if info.qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        return np.ascontiguousarray(raw, np.float32)
    return np.ascontiguousarray(dequantize(raw, info.qtype))


def is_f16(f, name: str) -> bool:
    return f.tensors[name].qtype == GGMLQuantizationType.F16


def read_blocks(f, path, n_layer: int, e: int) -> list[VisionBlock]:
    """The ViT blocks v.blk.*; as llama.cpp, an FFN whose down matrix takes E inputs was written with up
    and down swapped (old conversions) and is read the other way round."""
    def t(name: str) -> np.ndarray:
        return tensor(f, path, name)

    blocks = []
    for i in range(n_layer):
        b = f"v.blk.{i}."
        up, up_b, down, down_b = t(b + "ffn_up.weight"), t(b + "ffn_up.bias"), t(b + "ffn_down.weight"), \
            t(b + "ffn_down.bias")
        if down.shape[1] == e:
            up, up_b, down, down_b = down, down_b, up, up_b
        blocks.append(VisionBlock(
            t(b + "ln1.weight"), t(b + "ln1.bias"), t(b + "attn_q.weight"), t(b + "attn_q.bias"),
            t(b + "attn_k.weight"), t(b + "attn_k.bias"), t(b + "attn_v.weight"), t(b + "attn_v.bias"),
            t(b + "attn_out.weight"), t(b + "attn_out.bias"), t(b + "ln2.weight"), t(b + "ln2.bias"),
            up, up_b, down, down_b, is_f16(f, b + "attn_q.weight")))
    return blocks


def load_mmproj(path: str | Path, n_embd_text: int):
    """Read a projector for a text model of width n_embd_text: a VisionModel (gemma3) or a
    service.vision.llava.LlavaModel (mlp); MmprojError when it cannot serve."""
    try:
        f = read_gguf(path)
    except GGUFError as e:
        raise MmprojError(str(e)) from None
    md = f.metadata

    def need(key: str):
        if key not in md:
            raise MmprojError(f"{path}: missing metadata {key!r}")
        return md[key]

    if md.get("general.architecture") != "clip":
        raise MmprojError(f"{path}: not a multimodal projector (general.architecture is "
                          f"{md.get('general.architecture')!r}, expected 'clip')")
    ptype = md.get("clip.projector_type", md.get("clip.vision.projector_type"))
    if ptype not in SUPPORTED:
        raise MmprojError(f"{path}: projector type {ptype!r} is not supported by this server "
                          f"(supported: {', '.join(SUPPORTED)})")
    if not md.get("clip.has_vision_encoder", False):
        raise MmprojError(f"{path}: the projector has no vision encoder (audio projectors are not supported)")
    if ptype == "mlp":
        from service.vision.llava import load_llava

        return load_llava(f, str(path), n_embd_text)
    if md.get("clip.use_silu", False) or not md.get("clip.use_gelu", False):
        raise MmprojError(f"{path}: only GELU vision encoders are supported")

    def t(name: str, required: bool = True) -> np.ndarray:
        return tensor(f, path, name, required)

    size, p, e = int(need("clip.vision.image_size")), int(need("clip.vision.patch_size")), \
        int(need("clip.vision.embedding_length"))
    if size % p or size // p < 1:
        raise MmprojError(f"{path}: image size {size} is not a multiple of the patch size {p}")
    merge = int(md.get("clip.vision.projector.scale_factor", 4))
    if (size // p) % merge:
        raise MmprojError(f"{path}: {size // p} patches per side do not pool by {merge}")
    if "v.pre_ln.weight" in f.tensors:
        raise MmprojError(f"{path}: a pre-layernorm (v.pre_ln) is not supported for gemma3 projectors")
    blocks = read_blocks(f, path, int(need("clip.vision.block_count")), e)
    patch_w = t("v.patch_embd.weight")
    if patch_w.shape != (e, 3, p, p):
        raise MmprojError(f"{path}: v.patch_embd.weight has shape {patch_w.shape}, expected {(e, 3, p, p)}")
    pb = t("v.patch_embd.bias", required=False)
    # mm.input_projection is stored (E, n_embd_text) in numpy order; the product is x @ W
    proj = t("mm.input_projection.weight")
    if proj.shape != (e, n_embd_text):
        raise MmprojError(f"{path}: mm.input_projection.weight maps {proj.shape[0]} -> {proj.shape[1]}, but the "
                          f"text model is {n_embd_text} wide: this projector belongs to another model")
    pos = t("v.position_embd.weight")
    if pos.shape != ((size // p) ** 2, e):
        raise MmprojError(f"{path}: v.position_embd.weight has shape {pos.shape}, expected {((size // p) ** 2, e)}")
    return VisionModel(
        str(path), ptype, size, p, e, int(need("clip.vision.attention.head_count")),
        float(need("clip.vision.attention.layer_norm_epsilon")),
        np.asarray(need("clip.vision.image_mean"), np.float32), np.asarray(need("clip.vision.image_std"), np.float32),
        merge, n_embd_text, np.ascontiguousarray(patch_w.reshape(e, 3 * p * p)),
        pb if pb.size else np.zeros(e, np.float32), pos, blocks,
        t("v.post_ln.weight", required=False), t("v.post_ln.bias", required=False),
        t("mm.soft_emb_norm.weight"), np.ascontiguousarray(proj.T), is_f16(f, "mm.input_projection.weight"))
