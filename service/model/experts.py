"""Mixture-of-experts weights of one layer: the router, the experts, the shared expert.

The file holds each expert matrix kind as one 3-D tensor (GGUF shape (k, n, n_expert): expert e's
(n, k) matrix is the e-th slice). Each slice is packed as its own kernels.packing.PackedMatrix,
then the n_expert packed matrices are stacked on a leading axis (ExpertStack): jitted code picks
expert e by indexing, with no tuple of n_expert records to compile (Qwen3-30B-A3B has 128).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as T

from kernels.packing import FLOAT_TYPES, PackedMatrix


@dataclass
class ExpertStack:
    """n_expert matrices W_e (n, k) of one type, in PackedMatrix's layout, stacked: expert e's
    arrays are qs[e], d[e], m[e], w[e]."""

    qtype: T
    n: int
    k: int
    width: int
    bs: int
    sym: float
    qs: np.ndarray  # uint8 (n_expert, L); L = 0 for float types
    d: np.ndarray  # uint16 (n_expert, L)
    m: np.ndarray  # uint16 (n_expert, L)
    w: np.ndarray  # (n_expert, L) float layout; L = 0 for quantized types

    @property
    def is_float(self) -> bool:
        return self.qtype in FLOAT_TYPES


def stack(mats: list[PackedMatrix]) -> ExpertStack:
    """One ExpertStack of equally shaped and typed packed matrices."""
    m0 = mats[0]
    arrays = {name: np.stack([getattr(m, name) for m in mats]) for name in ("qs", "d", "m", "w")}
    return ExpertStack(m0.qtype, m0.n, m0.k, m0.width, m0.bs, m0.sym, **arrays)


@dataclass
class MoELayer:
    """Until load_weights resolves them, the matrices are the loader's futures (one per expert)."""

    router: PackedMatrix  # (n_expert, n_embd): ffn_gate_inp
    gate: ExpertStack  # (n_ff_exp, n_embd) per expert: ffn_gate_exps
    up: ExpertStack  # ffn_up_exps
    down: ExpertStack  # (n_embd, n_ff_exp) per expert: ffn_down_exps
    shexp_gate: np.ndarray | None = None  # float32 (n_embd,): sigmoid(h . g) scales the shared expert
    shexp_gate_up: list[PackedMatrix] | None = None  # fused [gate; up], or gate, up
    shexp_down: PackedMatrix | None = None
    # gpt-oss's biases, float32: the router's (n_expert,), and per expert gate and up (n_expert, n_ff_exp),
    # down (n_expert, n_embd)
    biases: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def resolved(self, done) -> MoELayer:
        """The packed layer, done(future) -> matrix being the loader's."""
        return MoELayer(done(self.router), stack([done(m) for m in self.gate]), stack([done(m) for m in self.up]),
                        stack([done(m) for m in self.down]), self.shexp_gate,
                        None if self.shexp_gate_up is None else [done(m) for m in self.shexp_gate_up],
                        None if self.shexp_down is None else done(self.shexp_down), self.biases)


def load_moe(ld, p: str, cfg) -> MoELayer:
    """Layer p's ("blk.N.") expert tensors through the weights loader ld, with llama.cpp's names and
    shapes; the shared expert where the config has one (qwen2moe)."""
    e, ne, f = cfg.n_embd, cfg.n_expert, cfg.n_ff_exp
    layer = MoELayer(
        router=ld.matrices([p + "ffn_gate_inp.weight"], e, [ne])[0],
        gate=ld.experts(p + "ffn_gate_exps.weight", e, f, ne),
        up=ld.experts(p + "ffn_up_exps.weight", e, f, ne),
        down=ld.experts(p + "ffn_down_exps.weight", f, e, ne),
    )
    if cfg.expert_bias:
        layer.biases = (ld.vector(p + "ffn_gate_inp.bias", ne), _bias_rows(ld, p + "ffn_gate_exps.bias", f, ne),
                        _bias_rows(ld, p + "ffn_up_exps.bias", f, ne), _bias_rows(ld, p + "ffn_down_exps.bias", e, ne))
    if cfg.n_ff_shexp:
        fs = cfg.n_ff_shexp
        # llama.cpp's shape is {n_embd}; the converter writes the Linear's (n_embd, 1), always F32
        name = p + "ffn_gate_inp_shexp.weight"
        t = ld.f.tensors.get(name)
        if t is not None and t.shape == (e, 1) and t.qtype == T.F32:
            ld.used.add(name)
            layer.shexp_gate = ld.f.data(name).reshape(e)
        else:
            layer.shexp_gate = ld.vector(name, e)
        layer.shexp_gate_up = ld.matrices([p + "ffn_gate_shexp.weight", p + "ffn_up_shexp.weight"], e, [fs, fs])
        layer.shexp_down = ld.matrices([p + "ffn_down_shexp.weight"], fs, [e])[0]
    return layer


def _bias_rows(ld, name: str, n: int, n_expert: int) -> np.ndarray:
    """A 2-D F32 tensor of GGUF shape (n, n_expert): one bias row per expert, (n_expert, n)."""
    t = ld.info(name, (n, n_expert))
    if t.qtype != T.F32:
        raise ld.fail(name, f"type {t.qtype.name} is not supported for a bias (F32 expected)")
    return ld.f.data(name).reshape(n_expert, n)
