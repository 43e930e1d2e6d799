"""Every CUDA kernel compiles for real GPUs (compute 9.0 and 8.0), checked without a GPU.

The simulator the other CUDA tests use runs kernels as Python and types nothing, so these
compile them for real in subprocesses (python -m tests.cuda_ir, with NUMBA_ENABLE_CUDASIM=0:
numba.cuda picks the simulator or the GPU target at import, and this process has the
simulator on). A deliberately broken set of kernels (tests.cuda_ir's --self-test) shows that
each check fails when it should.

The PTX-level checks (every kernel through libNVVM, no fused multiply-add in the PTX of the
bit-exact kernels, no .f64 instruction) need libNVVM and libdevice from a CUDA toolkit, which
the default install lacks: without them those tests report a skip that names the reason, and
the IR-level checks (typing, lowering, unrounded products, float64 in the IR) still run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"9.0": ["--cc", "9.0"], "8.0": ["--cc", "8.0"], "self-test": ["--self-test"]}


@pytest.fixture(scope="module")
def reports() -> dict:
    """tests.cuda_ir's JSON for each run in RUNS, run side by side (about 5 s each)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    procs = {name: subprocess.Popen([sys.executable, "-m", "tests.cuda_ir", *args], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in RUNS.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"tests.cuda_ir {name} exited {proc.returncode}:\n{stderr[-4000:]}"
        out[name] = json.loads(stdout)
    return out


def _listing(bad: list[dict], *fields: str) -> str:
    return "\n".join(f"{r['kernel']}: " + "; ".join(f"{f}={r[f]}" for f in fields) for r in bad)


@pytest.mark.parametrize("cc", ["9.0", "8.0"])
def test_every_kernel_types_lowers_and_compiles(reports, cc):
    rep = reports[cc]
    assert len(rep["kernels"]) >= 25  # the table, not an empty run
    bad = [r for r in rep["kernels"] if not r["ok"]]
    assert not bad, f"{len(bad)} kernels do not compile for compute {cc}:\n" + "\n\n".join(
        f"{r['kernel']}\n{r['error']}" for r in bad)


def _needs_nvvm(rep: dict) -> None:
    if not rep["nvvm"]:
        pytest.skip(f"PTX check needs libNVVM and libdevice (a CUDA toolkit), not loadable here: {rep['nvvm_missing']}")


@pytest.mark.parametrize("cc", ["9.0", "8.0"])
def test_every_kernel_compiles_to_ptx(reports, cc):
    """The IR also goes through the real compiler (libNVVM) and gives PTX for each kernel."""
    rep = reports[cc]
    _needs_nvvm(rep)
    bad = [r["kernel"] for r in rep["kernels"] if not r["ptx"]]
    assert not bad, f"no PTX for compute {cc}:\n" + "\n".join(bad)


def test_table_lists_every_kernel(reports):
    """A new kernel in kernels/cuda needs its line in tests.cuda_ir.KERNELS."""
    missing = reports["9.0"]["uncovered"]
    assert not missing, "kernels missing from tests.cuda_ir.KERNELS (add (module, kernel, argtypes)):\n" + \
        "\n".join(missing)


def test_exact_kernels_round_every_product(reports):
    """Bit-exact kernels: no product may feed an add unrounded (NVVM/ptxas would fuse an FMA)."""
    exact = [r for r in reports["9.0"]["kernels"] if r["exact"]]
    assert len(exact) >= 15  # the dequantization kernels
    bad = [r for r in exact if r["fused_products"]]
    assert not bad, "products an FMA would absorb (use kernels.cuda.exact.mul):\n" + _listing(bad, "fused_products")


def test_exact_kernels_have_no_fma_in_ptx(reports):
    """What NVVM and ptxas make of the bit-exact kernels: no fma.* and no fused mul+add pair."""
    rep = reports["9.0"]
    _needs_nvvm(rep)
    bad = [r for r in rep["kernels"] if r["exact"] and (r["ptx_fma"] or r["ptx_fused"])]
    assert not bad, "FMA in the PTX of bit-exact kernels (use kernels.cuda.exact.mul):\n" + _listing(
        bad, "ptx_fma", "ptx_fused")


def test_float_kernels_do_no_float64_work(reports):
    """float64 runs at 1/2 to 1/64 the float32 rate; typed-in float64 is almost always a slip
    (a Python float literal, or uint/int branches that numba unifies to float64)."""
    bad = [r for r in reports["9.0"]["kernels"] if r["ok"] and not r["f64_by_design"] and r["ir_double"]]
    assert not bad, "float64 in float32 kernels:\n" + _listing(bad, "ir_double")


def test_float_kernels_have_no_f64_in_ptx(reports):
    rep = reports["9.0"]
    _needs_nvvm(rep)
    bad = [r for r in rep["kernels"] if r["ok"] and not r["f64_by_design"] and r["ptx_f64"]]
    assert not bad, "float64 instructions in the PTX of float32 kernels:\n" + _listing(bad, "ptx_f64")


def test_broken_kernels_are_caught(reports):
    rep = {r["kernel"].split("(")[0].rsplit(".", 1)[1]: r for r in reports["self-test"]["kernels"]}
    assert not rep["_bad_unify"]["ok"] and "Cannot unify" in rep["_bad_unify"]["error"]
    assert not rep["_bad_numpy"]["ok"] and "zeros" in rep["_bad_numpy"]["error"]
    assert not rep["_bad_device_call"]["ok"]
    assert "missing a required argument" in rep["_bad_device_call"]["error"]
    for name in ("_bad_fma", "_bad_fma_call"):
        r = rep[name]
        assert r["ok"] and r["exact"] and r["fused_products"], r
    r = rep["_bad_double"]
    assert r["ok"] and not r["exact"] and any("fmul double" in line for line in r["ir_double"]), r


def test_broken_kernels_are_caught_in_ptx(reports):
    """The PTX checks above catch what they look for: an FMA and float64 instructions."""
    _needs_nvvm(reports["self-test"])
    rep = {r["kernel"].split("(")[0].rsplit(".", 1)[1]: r for r in reports["self-test"]["kernels"]}
    for name in ("_bad_fma", "_bad_fma_call"):  # NVVM fuses the first itself; the second is left
        r = rep[name]                            # as mul.f32 + sub.f32 for ptxas
        assert r["ptx_fma"] or r["ptx_fused"], r
    assert any(op.endswith(".f64") for op in rep["_bad_double"]["ptx_f64"]), rep["_bad_double"]
