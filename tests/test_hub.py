"""-hf/--hf-repo resolves the model through huggingface_hub's cache (offline here: the
cache is laid out as huggingface_hub writes it), then serves it."""

from __future__ import annotations

import os

import httpx
import pytest

from service.hub import pick_mmproj, quant_bits
from tests.server_proc import GEMMA3, SMOLLM2, ServerProcess
from tests.vision_files import tiny_mmproj


def fake_cache(root, repo: str, files: list[str], mmproj=None, model=SMOLLM2):
    base = root / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snap.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(snap.name)
    for f in files:
        (snap / f).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(mmproj if "mmproj" in f else model, snap / f)
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


@pytest.mark.parametrize("name,bits", [("m-Q4_K_M.gguf", 4), ("mmproj-m-f16.gguf", 16), ("m.Q8_0.gguf", 8),
                                       ("m-BF16-00001-of-00003.gguf", 16), ("m.gguf", 0), ("mmproj.gguf", 0)])
def test_quant_bits_read_the_names_last_tag(name, bits):
    assert quant_bits(name) == bits


def test_the_projector_is_picked_as_llama_server_picks_it():
    files = ["m-Q4_K_M.gguf", "m-Q8_0.gguf", "mmproj-m-f16.gguf", "mmproj-m-Q8_0.gguf", "sub/mmproj-x-Q4_0.gguf"]
    assert pick_mmproj(files, "m-Q8_0.gguf") == "mmproj-m-Q8_0.gguf"  # bits closest to the model's
    assert pick_mmproj(files, "m-Q4_K_M.gguf") == "mmproj-m-Q8_0.gguf"  # |8-4| < |16-4|
    assert pick_mmproj(files, "sub/m-Q4_K_M.gguf") == "sub/mmproj-x-Q4_0.gguf"  # the deepest directory first
    assert pick_mmproj(["m-Q4_0.gguf", "other/mmproj-f16.gguf"], "m-Q4_0.gguf") is None  # not beside or above
    assert pick_mmproj(["m-Q4_0.gguf", "mmproj-m-f16.bin"], "m-Q4_0.gguf") is None


def test_hf_repo_brings_its_projector_unless_no_mmproj(tmp_path):
    mm = tiny_mmproj(tmp_path / "tiny.gguf")  # a gemma3 projector, for Gemma 3 270M
    cache = fake_cache(tmp_path / "hub", "someone/gemma-GGUF", ["gemma-Q4_K_M.gguf", "mmproj-gemma-f16.gguf"], mm,
                       model=GEMMA3)
    env = {"LLAMA_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    for extra, vision in (((), True), (("--no-mmproj",), False)):
        s = ServerProcess("-hf", "someone/gemma-GGUF", "-c", "256", *extra, env=env, model=None)
        try:
            s.wait_ready()
            props = httpx.get(s.url + "/props").json()
            assert props["model_path"].endswith("gemma-Q4_K_M.gguf") and props["modalities"]["vision"] is vision
        finally:
            s.stop()
