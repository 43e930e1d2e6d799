"""The llama-server command, run as a subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest

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


# ---- llama-server flags through a real server


@pytest.fixture(scope="module")
def tuned():
    """A server started with server-wide sampling flags, --no-warmup, and INERT flags (one by variable)."""
    from tests.server_proc import ServerProcess

    s = ServerProcess("-ngl", "0", "-c", "256", "--no-warmup", "--repeat-penalty", "1.3", "--top-k", "3",
                      "--samplers", "top_k;temperature", "--temp", "0", "--dry-sequence-breaker", "none",
                      "-l", "5-inf", "--mlock", "-fa", "on", "--alias", "smol,tiny",
                      "--grammar", 'root ::= "yes" | "no"',
                      env={"LLAMA_ARG_NUMA": "distribute"}).wait_ready()
    yield s
    s.stop()


def test_sampling_flags_are_the_defaults_of_props_and_requests(tuned):
    import httpx

    params = httpx.get(tuned.url + "/props").json()["default_generation_settings"]["params"]
    assert (params["repeat_penalty"], params["top_k"], params["temperature"]) == (pytest.approx(1.3), 3, 0.0)
    assert (params["samplers"], params["dry_sequence_breakers"], params["logit_bias"]) == (
        ["top_k", "temperature"], [], [{"bias": None, "token": 5}])
    with tuned.client() as c:
        got = c.post("/completion", json={"prompt": "Hello", "n_predict": 2}).json()["generation_settings"]
        assert (got["repeat_penalty"], got["top_k"]) == (pytest.approx(1.3), 3)
        assert got["samplers"] == ["top_k", "temperature"]
        own = c.post("/completion", json={"prompt": "Hello", "n_predict": 2, "top_k": 9, "repeat_penalty": 1.0,
                                          "samplers": ["temperature"]}).json()["generation_settings"]
        assert (own["top_k"], own["repeat_penalty"], own["samplers"]) == (9, 1.0, ["temperature"])


def test_server_grammar_applies_to_requests_without_their_own(tuned):
    with tuned.client() as c:
        assert c.post("/completion", json={"prompt": "Is it?", "n_predict": 4}).json()["content"] in ("yes", "no")
        own = c.post("/completion", json={"prompt": "Is it?", "n_predict": 4, "grammar": 'root ::= "maybe"'}).json()
        assert own["content"] == "maybe"
        chat = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Is it?"}],
                                                    "max_tokens": 4}).json()
        assert chat["choices"][0]["message"]["content"] in ("yes", "no")


def test_no_warmup_serves_and_the_first_alias_names_the_model(tuned):
    import json

    import httpx

    with tuned.client() as c:
        assert c.post("/completion", json={"prompt": "Hi", "n_predict": 3}).json()["tokens_predicted"] >= 1
    assert httpx.get(tuned.url + "/props").json()["model_alias"] == "smol"
    loaded = [json.loads(ln) for ln in tuned.output().splitlines() if '"model loaded"' in ln]
    assert loaded and loaded[0]["warmup"] is False


def test_inert_flags_given_are_logged_once_at_startup(tuned):
    import json

    lines = [json.loads(ln) for ln in tuned.output().splitlines() if '"flag has no effect in llamajit"' in ln]
    assert [(ln["flag"], ln["level"]) for ln in lines] == [("--mlock", "warning"), ("-fa", "warning"),
                                                           ("LLAMA_ARG_NUMA", "warning")]
    assert lines[1]["reason"] == "attention is always llamajit's own fused kernel"


def test_unbuilt_feature_exits_2_before_loading():
    out = run("-m", "/nonexistent.gguf", "--mmproj-url", "http://h/proj.gguf")
    assert out.returncode == 2
    assert "--mmproj-url: this multimodal option (--mmproj itself works" in out.stderr
    assert "unrecognized" not in out.stderr


def test_offline_hf_repo_not_in_cache_fails_clearly(tmp_path):
    import os

    # An unreachable endpoint: were the Hub contacted, the error would be a connection error instead.
    env = {**os.environ, "LLAMA_CACHE": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    out = run("--offline", "-hf", "nobody/nothing:Q4_K_M", env=env)
    assert out.returncode == 1
    assert "nobody/nothing" in out.stderr and "--offline, and the model is not in the local cache" in out.stderr


def test_hf_token_and_offline_reach_huggingface_hub(monkeypatch):
    import huggingface_hub

    from service.hub import resolve_model

    seen = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo, file, cache_dir=None, token=None, local_files_only=False:
                        seen.append((repo, file, token, local_files_only)) or "/cache/m.gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # restored afterwards: --offline sets it for the process
    assert resolve_model("u/m-GGUF", "m.gguf", token="hf_secret") == ("/cache/m.gguf", None)
    assert resolve_model("u/m-GGUF", "m.gguf", offline=True) == ("/cache/m.gguf", None)
    assert seen == [("u/m-GGUF", "m.gguf", "hf_secret", False), ("u/m-GGUF", "m.gguf", None, True)]
