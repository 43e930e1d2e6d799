"""-hf/--hf-repo resolves the model through huggingface_hub's cache (offline here: the
cache is laid out as huggingface_hub writes it), then serves it."""

from __future__ import annotations

import os

import httpx

from tests.server_proc import SMOLLM2, ServerProcess


def fake_cache(root, repo: str, files: list[str]):
    base = root / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snap.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(snap.name)
    for f in files:
        os.symlink(SMOLLM2, snap / f)
    return root


def test_hf_repo_with_quant_tag_serves_the_cached_file(tmp_path):
    cache = fake_cache(tmp_path / "hub", "someone/smol-GGUF", ["smol-Q8_0.gguf", "smol-Q4_1.gguf"])
    env = {"LLAMA_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    s = ServerProcess("-hf", "someone/smol-GGUF:Q4_1", "-c", "256", env=env, model=None)
    try:
        s.wait_ready()
        props = httpx.get(s.url + "/props").json()
        assert props["model_path"].endswith("smol-Q4_1.gguf")
    finally:
        s.stop()


def test_hf_repo_errors_exit_1(tmp_path):
    cache = fake_cache(tmp_path / "hub", "someone/smol-GGUF", ["smol-Q8_0.gguf"])
    env = {"LLAMA_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    missing = ServerProcess("-hf", "someone/smol-GGUF:Q5_K", "-c", "256", env=env, model=None)
    assert missing.proc.wait(60) == 1 and "Q5_K" in missing.output()
    unknown = ServerProcess("-hf", "nobody/nothing", "-c", "256", env=env, model=None)
    assert unknown.proc.wait(60) == 1 and "nobody/nothing" in unknown.output()
