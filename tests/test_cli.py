"""The llama-server command, run as a subprocess."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "-m", "service.cli"]


def run(*args, **kw):
    return subprocess.run([*SERVER, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


def test_help_and_version():
    out = run("--help")
    assert out.returncode == 0 and "--model" in out.stdout and "LLAMA_ARG_MODEL" in out.stdout
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("llamajit ")


def test_bad_flag_exits_2():
    out = run("--no-such-flag")
    assert out.returncode == 2 and "--no-such-flag" in out.stderr


def test_missing_model():
    assert run().returncode == 2
    out = run("-m", "/nonexistent.gguf")
    assert out.returncode == 1 and "/nonexistent.gguf" in out.stderr


def test_model_from_env_serves_and_logs_its_facts():
    import json

    import httpx

    from tests.server_proc import ServerProcess

    env = {"LLAMA_ARG_MODEL": str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"), "LLAMA_ARG_CTX_SIZE": "256"}
    s = ServerProcess(env=env, model=None).wait_ready()
    try:
        meta = httpx.get(s.url + "/v1/models").json()["data"][0]["meta"]
        assert meta["n_vocab"] == 49152 and httpx.get(s.url + "/props").json()["n_ctx"] == 256
    finally:
        assert s.stop() == 0
    loaded = [json.loads(ln) for ln in s.output().splitlines() if '"model loaded"' in ln]
    assert loaded and loaded[0]["ftype"] == "Q4_1" and loaded[0]["arch"] == "llama"


def test_broken_model_exits_1_naming_file_and_field(tmp_path):
    good = (ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").read_bytes()
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(good[: len(good) // 2])
    out = run("-m", str(bad))
    assert out.returncode == 1
    assert str(bad) in out.stderr and "runs past the end of the file" in out.stderr


def test_fetch_models_is_idempotent_and_verifies():
    out = subprocess.run([sys.executable, "scripts/fetch_models.py", "smollm2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "present, sha256 ok" in out.stdout
    bad = subprocess.run([sys.executable, "scripts/fetch_models.py", "nope"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "nope" in bad.stderr
