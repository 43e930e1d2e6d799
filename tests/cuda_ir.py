"""Compile every CUDA kernel for a real GPU's compute capability on a machine without one.

Why: the kernel tests run under numba's simulator, which executes the Python source and does
no typing, so a kernel can pass them and still fail to compile on a GPU (unification errors,
NumPy calls numba.cuda lacks, float64 arithmetic creeping into float32 code).

How: numba.cuda's compile_cuda() types a kernel and lowers it to NVVM IR with no driver and
no NVVM. The one device query on that path is numba.cuda.dispatcher.get_current_device(), which
compile_device() calls when a kernel calls a device function; it is replaced (in this process
only) by a stand-in whose only attribute is compute_capability. The kernel is then fixed up as
numba's _Kernel does (kernel_fixup). Where libNVVM loads (a CUDA toolkit, no driver needed),
the IR is also compiled to PTX with the options numba would pass, which is the real compiler.

Reported per kernel: whether it types, lowers (and compiles); for exact kernels (fastmath off,
kernels._jit's cuda_exact_kernel), every fadd/fsub that consumes a plain fmul once device
functions are inlined (NVVM would contract it into an FMA: such products must go through
kernels.cuda.exact.mul), and the PTX's fma.rn.f32 and mul.f32-into-add/sub; for every kernel,
the float64 values numba typed (slow on GPUs) and the PTX's f64 instructions.

Run (NUMBA_ENABLE_CUDASIM must be unset or 0, it is read at numba.cuda's import):
  python -m tests.cuda_ir [--cc 9.0] [--self-test]   -> JSON on stdout
--self-test compiles the deliberately broken kernels at the end of this file instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import time
import traceback
import types as pytypes

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    sys.exit("tests.cuda_ir compiles for a real GPU: run it with NUMBA_ENABLE_CUDASIM unset or 0")

from numba import types  # noqa: E402

f8, f4, f2, b1 = types.float64, types.float32, types.float16, types.boolean
i8, i4, u4, u2, u1 = types.int64, types.int32, types.uint32, types.uint16, types.uint8


def C(dtype, ndim):
    """A C-contiguous device array type (whole buffers and their row slices)."""
    return types.Array(dtype, ndim, "C")


def A(dtype, ndim):
    """A strided device array type (column slices of a fused product, when it has > 1 row)."""
    return types.Array(dtype, ndim, "A")


_MATMUL = (C(u4, 2), C(f4, 2), C(f4, 2), C(f4, 2), i8, i8, i8, i8)  # a DeviceMatrix's fields
_BLOCKS = (C(f4, 1), C(u1, 1), C(f2, 1), i8)  # dequant block kernels: out, src, src as f16, n
# KV caches as the layers pass them (4d: every sequence; 3d: one sequence's), with the views that the
# kernels read block types through: f32 and f16 caches are their own view, block types are bytes
# with a float16 view (kernels.cuda.kv)
_CACHES = [(C(f4, 4), C(f4, 4)), (C(f2, 4), C(f2, 4)), (C(u1, 4), C(f2, 4))]
_CACHES_3 = [(C(t, 3), C(h, 3)) for t, h in ((f4, f4), (f2, f2), (u1, f2))]

# (module, kernel, argument types as its host wrapper passes them[, F64]). Python ints type as
# int64, bools as boolean, np.float32(x) as float32, float(x) as float64; a layout appears once
# per variant that calls really make. F64 marks a kernel that computes in float64 on purpose.
F64 = "float64 by design"
KERNELS = [
    ("kernels.cuda.norm", "_rms_norm", (C(f4, 2), C(f4, 2), C(f4, 1), f4)),
    ("kernels.cuda.norm", "_residual", (C(f4, 2), C(f4, 2), C(f4, 2), C(f4, 1), C(f4, 1), f4)),
    *[("kernels.cuda.heads", "_heads", (C(f4, 3), cache, cache, half, half, i8, i8, i8, i8, f4, f4, C(f4, 2),
                                        C(i4, 1), C(i4, 1), C(f4, 2), C(f4, 2), C(f4, 1), C(f4, 1), f4, i8, b1, i8, i8))
      for cache, half in _CACHES],
    ("kernels.cuda.hadamard", "_rows", (C(f4, 2), i8, f4)),
    ("kernels.cuda.activation", "_glu", (C(f4, 2), A(f4, 2), A(f4, 2), b1)),
    ("kernels.cuda.activation", "_glu", (C(f4, 2), C(f4, 2), C(f4, 2), b1)),
    ("kernels.cuda.activation", "_add_bias", (C(f4, 2), C(f4, 1))),
    ("kernels.cuda.activation", "_scale_cap", (C(f4, 2), C(f4, 2), f4, f4)),
    ("kernels.cuda.activation", "_gather", (C(f4, 2), C(f4, 2), C(i8, 1))),
    ("kernels.cuda.qmatmul", "gemv", (C(f4, 2), C(f4, 2), *_MATMUL)),
    ("kernels.cuda.qmatmul", "gemv", (A(f4, 2), C(f4, 2), *_MATMUL)),
    ("kernels.cuda.qmatmul", "gemm", (C(f4, 2), C(f4, 2), *_MATMUL)),
    ("kernels.cuda.qmatmul", "gemm", (A(f4, 2), C(f4, 2), *_MATMUL)),
    ("kernels.cuda.dequant", "_f32", (C(u4, 1), C(u4, 1), i8)),
    ("kernels.cuda.dequant", "_f16", (C(u4, 1), C(u2, 1), i8)),
    ("kernels.cuda.dequant", "_bf16", (C(u4, 1), C(u2, 1), i8)),
    *[("kernels.cuda.dequant", k, _BLOCKS) for k in ("_q4_0", "_q4_1", "_q5_0", "_q5_1", "_q8_0", "_iq4_nl")],
    *[("kernels.cuda.dequant_k", k, _BLOCKS) for k in ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_xs")],
    *[("kernels.cuda.dequant_iq", k, _BLOCKS)
      for k in ("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m", "tq1_0", "tq2_0")],
    ("kernels.cuda.dequant_iq", "iq1_m_scales", (C(u2, 1), C(u1, 1), i8)),
    ("kernels.cuda.dequant_iq", "mxfp4", (C(f4, 1), C(u1, 1), i8)),
    *[("kernels.cuda.attention", "attention_decode", (C(f4, 3), C(f4, 3), cache, cache, half, half, i8, i8,
                                                       C(i4, 1), C(i4, 1), i8, f4, i8, f4, C(f4, 3)))
      for cache, half in _CACHES],
    *[("kernels.cuda.attention", "attention_prefill", (C(f4, 3), C(f4, 3), cache, cache, half, half, i8,
                                                        i8, C(i4, 1), i8, f4, i8, f4, i8, i8))
      for cache, half in _CACHES_3],
    ("kernels.cuda.sampling", "_softmax_parts", (C(f4, 2), C(f4, 1), i8)),
    ("kernels.cuda.sampling", "_softmax_norm", (C(f4, 1), C(f4, 1), C(f4, 2), C(f4, 1), i8, i8)),
    ("kernels.cuda.sampling", "_top_p", (C(i4, 1), C(f4, 1), C(f4, 1), i8, f8, i8), F64),  # CPU sums in f64
    ("kernels.cuda.top_k", "_radix_init", (C(i4, 2), C(i8, 2), C(i4, 1), i8, i8)),
    ("kernels.cuda.top_k", "_radix_pass", (C(i4, 2), C(i8, 2), C(u4, 1), i8, i8, i8)),
    ("kernels.cuda.top_k", "_radix_gather", (C(i4, 1), C(i4, 1), C(i8, 2), C(i4, 2), C(u4, 1), i8, i8, i8)),
    ("kernels.cuda.top_k", "_sort_top", (C(i4, 1), C(f4, 1), C(i4, 1), C(u4, 1), C(f4, 1), i8)),
]
# Modules scanned for kernels the table misses (every cuda.jit kernel in them must be listed).
SCANNED = "kernels.cuda"


def _fake_device(cc: tuple[int, int]) -> None:
    """Device functions are compiled for get_current_device().compute_capability: answer cc."""
    from numba.cuda import dispatcher

    stand_in = pytypes.SimpleNamespace(compute_capability=cc)
    dispatcher.get_current_device = lambda: stand_in


def lower(fn, argtypes, cc):
    """(code library, kernel's LLVM name, fastmath) for kernel dispatcher fn, as _Kernel builds it."""
    from numba.cuda import compiler

    fastmath = bool(fn.targetoptions.get("fastmath"))
    cres = compiler.compile_cuda(fn.py_func, types.void, tuple(argtypes), fastmath=fastmath, cc=cc,
                                 nvvm_options={"fastmath": fastmath, "opt": 3})
    name = cres.fndesc.llvm_func_name
    compiler.kernel_fixup(cres.library.get_function(name), False)
    return cres.library, name, fastmath


def _ssa(lib, name):
    """The kernel's basic blocks, device functions inlined and locals in SSA form (llvmlite).

    numba keeps variables in allocas and device functions return through pointers; inlining
    and SROA turn both into SSA values, so a product is traced to its consumers as written.
    No optimisation runs: today's LLVM would fold conversions that NVVM keeps.
    """
    import llvmlite.binding as llvm

    mods = [llvm.parse_assembly(s) for s in lib.llvm_strs]
    mod = mods[0]
    for m in mods[1:]:
        mod.link_in(m)
    for fn in mod.functions:
        if not fn.is_declaration and fn.name != name:
            fn.add_function_attribute("alwaysinline")
    llvm.initialize_all_targets()
    tm = llvm.Target.from_triple(mod.triple).create_target_machine()
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=0))
    mpm = llvm.create_new_module_pass_manager()
    mpm.add_always_inliner_pass()
    mpm.add_sroa_pass()
    mpm.add_instruction_namer_pass()
    mpm.run(mod, pb)
    return list(mod.get_function(name).blocks)


def _fused_products(blocks):
    """IR lines where fadd/fsub consumes a plain fmul (directly or through phi/select)."""
    insts = [ins for blk in blocks for ins in blk.instructions]
    products = {ins.name for ins in insts if ins.opcode == "fmul"}
    grew = True
    while grew:  # a phi or select of a product is still an unrounded-looking product
        grew = False
        for ins in insts:
            if ins.opcode in ("phi", "select") and ins.name not in products:
                if any(op.name in products for op in ins.operands):
                    products.add(ins.name)
                    grew = True
    return [str(ins).strip() for ins in insts
            if ins.opcode in ("fadd", "fsub") and any(op.name in products for op in ins.operands)]


def _doubles(blocks):
    """(float64 work, float64 compares) as IR lines, as numba typed them (constant folds aside).

    A float32 compared with a Python number is widened for the compare only; NVVM folds that
    (fcmp of fpext against a constant), so those lines are listed apart and are no fault.
    """
    insts = [ins for blk in blocks for ins in blk.instructions]
    f64 = [ins for ins in insts if ins.opcode not in ("load", "store", "call", "alloca", "getelementptr")
           and (str(ins.type) == "double" or any(str(op.type) == "double" for op in ins.operands))
           and not all(op.is_constant for op in ins.operands)]
    users = {}  # value name -> opcodes of the instructions using it
    for ins in insts:
        for op in ins.operands:
            users.setdefault(op.name, set()).add(ins.opcode)
    cmp = [ins for ins in f64 if ins.opcode == "fcmp"
           or (ins.opcode == "fpext" and users.get(ins.name, set()) <= {"fcmp"})]
    return [str(i).strip() for i in f64 if i not in cmp], [str(i).strip() for i in cmp]


def _libdevice():
    """libdevice bitcode, found without numba's get_cuda_paths() (which also wants NVRTC)."""
    from numba.cuda import cuda_paths

    with open(cuda_paths._get_libdevice_path().info, "rb") as f:
        return f.read()


def nvvm_ready() -> bool:
    """libNVVM and libdevice load (a CUDA toolkit is installed; no driver needed)."""
    return nvvm_missing() is None


def nvvm_missing() -> str | None:
    """Why libNVVM or libdevice does not load (None when both do): the reason a PTX check skips."""
    from numba.cuda.cudadrv import nvvm

    try:
        nvvm.NVVM()
        _libdevice()
        return None
    except Exception as e:
        return f"{type(e).__name__}: {e}".strip()


def ptx(lib, cc, fastmath):
    """PTX from libNVVM, with numba's options (nvvm.compile_ir, minus its NVRTC-bound lookups)."""
    from numba.cuda.cudadrv import nvvm

    opts = {"arch": f"compute_{cc[0]}{cc[1]}" + ("a" if cc >= (9, 0) else ""), "opt": 3}
    if fastmath:
        opts.update(ftz=True, fma=True, prec_div=False, prec_sqrt=False)
    cu = nvvm.CompilationUnit(opts)
    for s in lib.llvm_strs:
        cu.add_module(nvvm.llvm_replace(s).encode())
    cu.verify()
    cu.lazy_add_module(_libdevice())
    out = cu.compile()
    return out.decode() if isinstance(out, bytes) else out


_PTX_OP = re.compile(r"^\s*(?:@!?%\w+\s+)?([a-z][\w.]*)\s+(.*?);")


def _ptx_checks(code):
    """(fma.rn.f32 count, plain mul.f32 results fed to add/sub.f32, float64 opcodes) of PTX.

    A mul.f32 without .rn may still be contracted into an FMA by ptxas (PTX ISA, mul: "may be
    optimized aggressively by the code generator"); mul.rn.f32 (libdevice fmul_rn) may not.
    """
    products, fused, f64 = set(), [], set()
    for line in code.splitlines():
        m = _PTX_OP.match(line)
        if not m:
            continue
        op, regs = m.group(1), [r.strip() for r in m.group(2).split(",")]
        if op in ("mul.f32", "mul.ftz.f32"):
            products.add(regs[0])
        elif op in ("add.f32", "add.ftz.f32", "sub.f32", "sub.ftz.f32") and products & set(regs[1:]):
            fused.append(line.strip())
        if ".f64" in op and not op.startswith(("ld.", "st.", "mov.")):
            f64.add(op)
    return len(re.findall(r"\bfma\.rn\.f32\b", code)), fused, sorted(f64)


def check(module, kernel, argtypes, cc, use_nvvm, *flags):
    """One kernel's report (a JSON-able dict); flags: F64 or nothing."""
    sig = ", ".join(str(t) for t in argtypes)
    rep = {"kernel": f"{module}.{kernel}({sig})", "ok": False, "error": None, "exact": None,
           "f64_by_design": F64 in flags, "fused_products": [], "ir_double": [], "ir_double_cmp": [],
           "ptx": None, "ptx_fma": None, "ptx_fused": [], "ptx_f64": []}
    t0 = time.perf_counter()
    try:
        fn = getattr(importlib.import_module(module), kernel)
        lib, name, fastmath = lower(fn, argtypes, cc)
        rep["exact"] = not fastmath
        blocks = _ssa(lib, name)
        rep["fused_products"] = [] if fastmath else _fused_products(blocks)
        rep["ir_double"], rep["ir_double_cmp"] = _doubles(blocks)
        if use_nvvm:
            code = ptx(lib, cc, fastmath)
            rep["ptx"] = len(code)
            fma, fused, rep["ptx_f64"] = _ptx_checks(code)
            if not fastmath:
                rep["ptx_fma"], rep["ptx_fused"] = fma, fused
        rep["ok"] = True
    except Exception as e:  # the report carries it; the test prints it
        rep["error"] = f"{type(e).__name__}: {e}"[:4000]
        rep["traceback"] = traceback.format_exc()[-2000:]
    rep["seconds"] = round(time.perf_counter() - t0, 3)
    return rep


def uncovered(table) -> list[str]:
    """Kernels (cuda.jit, not device functions) of SCANNED's modules that the table lacks."""
    import pkgutil

    from numba.cuda.dispatcher import CUDADispatcher

    listed = {(e[0], e[1]) for e in table}
    pkg = importlib.import_module(SCANNED)
    missing = []
    for info in pkgutil.iter_modules(pkg.__path__):
        name = f"{SCANNED}.{info.name}"
        try:
            mod = importlib.import_module(name)
        except Exception as e:  # a module that does not import hides its kernels: say so
            missing.append(f"{name} (import failed: {type(e).__name__}: {e})")
            continue
        for attr, val in vars(mod).items():
            if (isinstance(val, CUDADispatcher) and not val.targetoptions.get("device")
                    and val.py_func.__module__ == name and (name, attr) not in listed):
                missing.append(f"{name}.{attr}")
    return missing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cc", default="9.0", help="compute capability, MAJOR.MINOR")
    p.add_argument("--self-test", action="store_true", help="compile the broken kernels below instead")
    args = p.parse_args(argv)
    cc = tuple(int(x) for x in args.cc.split("."))
    _fake_device(cc)
    why_not = nvvm_missing()
    use_nvvm = why_not is None
    if args.self_test:
        from tests.cuda_ir_broken import SELF_TEST as table
    else:
        table = KERNELS
    t0 = time.perf_counter()
    reports = []
    for entry in table:
        rep = check(*entry[:3], cc, use_nvvm, *entry[3:])
        reports.append(rep)
        first = (rep["error"] or "").strip().splitlines()[:1]
        print("ok  " if rep["ok"] else "FAIL", f"{rep['seconds']:6.2f}s", rep["kernel"], *first, file=sys.stderr)
    out = {"cc": list(cc), "nvvm": use_nvvm, "nvvm_missing": why_not, "kernels": reports,
           "uncovered": [] if args.self_test else uncovered(KERNELS),
           "seconds": round(time.perf_counter() - t0, 2)}
    json.dump(out, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
