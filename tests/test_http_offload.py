"""-ngl and -dev through the real server: the CLI flags and their LLAMA_ARG_* variables,
/props' `offload` report, the warning without a device, -dev none, an unknown device,
--list-devices, and the same greedy completion on GPU and CPU.

The "GPU" here is numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set for the servers
explicitly), on a tiny F32 model so a simulated forward takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kernels.cuda import launch
from tests.server_proc import ROOT, ServerProcess
from tests.synthetic import Spec, write_model

SPEC = Spec("llama", n_layer=2, n_embd=32, n_ff=64, n_head=2, n_head_kv=1, n_vocab=72, eps=1e-5, seed=9)
# Few tokens: every simulated step costs seconds (the simulator runs each CUDA thread in Python).
BODY = {"prompt": "abc", "n_predict": 3, "temperature": 0, "return_tokens": True}
# Sampled with a seed: on the GPU the chain starts from the device's top 40 (Sampler.top_k_first);
# with n_probs it needs the whole row. Both must draw what the CPU server draws.
SAMPLED = [{"prompt": "xyz", "n_predict": 2, "temperature": 0.9, "seed": 5, "return_tokens": True},
           {"prompt": "xyz", "n_predict": 2, "temperature": 0.9, "seed": 6, "n_probs": 2, "return_tokens": True}]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("offload_http") / "tiny.gguf", SPEC)


def serve(model, *args, env=None):
    s = ServerProcess("-c", "64", "-np", "1", *args, model=model, env=env)
    s.wait_ready(timeout=600)
    return s


def completion_and_props(s, sampled=False):
    with s.client() as c:
        r = c.post("/completion", json=BODY, timeout=300)
        assert r.status_code == 200, r.text
        props = c.get("/props").json()
        if sampled:
            more = [c.post("/completion", json=b, timeout=300).json()["tokens"] for b in SAMPLED]
            return r.json(), props["offload"], more
    return r.json(), props["offload"]


def test_offloaded_server_matches_the_cpu_server(model):
    cpu = serve(model, "-ngl", "0")
    try:
        want, where, want_sampled = completion_and_props(cpu, sampled=True)
    finally:
        cpu.stop()
    assert where["layers"] == ["CPU", "CPU"] and where["output"] == "CPU" and where["device"] is None
    gpu = serve(model, env={"NUMBA_ENABLE_CUDASIM": "1", "LLAMA_ARG_N_GPU_LAYERS": "all"})
    try:
        got, where, got_sampled = completion_and_props(gpu, sampled=True)
    finally:
        out = gpu.output()
        gpu.stop()
    assert where["n_gpu_layers"] == 2 and where["layers"] == ["GPU", "GPU"] and where["output"] == "GPU"
    assert "simulator" in where["device"] and where["requested"] == "all"
    assert '"n_gpu_layers": 2' in out and '"output_on_gpu": true' in out  # the load log line
    assert got["tokens"] == want["tokens"] and got["content"] == want["content"]
    assert len(got["tokens"]) == BODY["n_predict"]
    assert got_sampled == want_sampled and [len(t) for t in got_sampled] == [2, 2]


@pytest.mark.skipif(launch.has_gpu(), reason="this machine has a CUDA device")
def test_no_device_warns_and_runs_on_the_cpu(model):
    s = serve(model, "-ngl", "5", env={"NUMBA_ENABLE_CUDASIM": "0"})
    try:
        body, where = completion_and_props(s)
    finally:
        s.stop()
        out = s.output()
    assert where["n_gpu_layers"] == 0 and where["layers"] == ["CPU", "CPU"] and where["requested"] == "5"
    warned = [json.loads(ln) for ln in out.splitlines() if "no CUDA device" in ln]
    assert len(warned) == 1 and warned[0]["level"] == "warning" and warned[0]["n_gpu_layers"] == "5"
    assert len(body["tokens"]) == BODY["n_predict"]


def test_dev_none_keeps_everything_on_the_cpu(model):
    s = serve(model, "-ngl", "all", "-dev", "none", env={"NUMBA_ENABLE_CUDASIM": "1"})
    try:
        body, where = completion_and_props(s)
    finally:
        s.stop()
    assert where["n_gpu_layers"] == 0 and where["output"] == "CPU" and where["device"] is None
    assert len(body["tokens"]) == BODY["n_predict"]


def test_unknown_device_fails_the_load(model):
    s = ServerProcess("-c", "64", "-ngl", "all", model=model, env={"NUMBA_ENABLE_CUDASIM": "1",
                                                                    "LLAMA_ARG_DEVICE": "CUDA7"})
    assert s.proc.wait(timeout=120) == 1
    assert "no device CUDA7" in s.output()


@pytest.mark.parametrize("sim", ["1", "0"])
def test_list_devices(sim):
    if sim == "0" and launch.has_gpu():
        pytest.skip("this machine has a CUDA device")
    r = subprocess.run([sys.executable, "-m", "service.cli", "--list-devices"], capture_output=True, text=True,
                       env={**os.environ, "NUMBA_ENABLE_CUDASIM": sim}, timeout=120, cwd=ROOT)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "Available devices:"
    assert lines[1:] == (["  CUDA0: CUDA simulator (NUMBA_ENABLE_CUDASIM)"] if sim == "1" else [])
