"""The router's model sources (service.router.catalog): the cache, --models-dir, presets."""

from __future__ import annotations

import os

import pytest

from service.router import catalog
from service.router.preset import PresetError

COMMIT = "a" * 40


def fake_cache(root, repo: str, files: list[str]) -> None:
    """huggingface_hub's cache layout: blobs, refs/main, snapshots/<commit>/<file> -> blob."""
    d = root / ("models--" + repo.replace("/", "--"))
    (d / "blobs").mkdir(parents=True)
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text(COMMIT)
    snap = d / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for i, f in enumerate(files):
        blob = d / "blobs" / f"{i:040x}"
        blob.write_bytes(b"GGUF" + f.encode())
        os.symlink(os.path.relpath(blob, snap), snap / f)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("LLAMA_CACHE", str(root))
    return root


def test_split_info_reads_tags_and_shards():
    assert catalog.split_info("tinygemma3-Q8_0.gguf") == ("tinygemma3-Q8_0", "Q8_0", 1)
    assert catalog.split_info("model.f16.gguf") == ("model.f16", "F16", 1)
    assert catalog.split_info("Kimi-UD-IQ1_S-00002-of-00006.gguf") == ("Kimi-UD-IQ1_S", "IQ1_S", 2)


def test_the_cache_lists_one_model_per_repository_and_tag(cache):
    fake_cache(cache, "ggml-org/tinygemma3-GGUF", ["tinygemma3-Q8_0.gguf", "mmproj-tinygemma3.gguf",
                                                    "tinygemma3-F16.gguf"])
    fake_cache(cache, "u/big", ["big-Q4_K_M-00001-of-00002.gguf", "big-Q4_K_M-00002-of-00002.gguf", "README.md"])
    found = catalog.scan_cache()
    assert sorted(found) == ["ggml-org/tinygemma3-GGUF:F16", "ggml-org/tinygemma3-GGUF:Q8_0", "u/big:Q4_K_M"]
    e = found["u/big:Q4_K_M"]
    assert e.source == "cache" and e.model_args[0] == "-m" and e.model_args[1].endswith("-00001-of-00002.gguf")


def test_an_empty_or_missing_cache_has_no_models(cache, monkeypatch):
    assert catalog.scan_cache() == {}
    monkeypatch.setenv("LLAMA_CACHE", str(cache / "missing"))
    assert catalog.scan_cache() == {}


def test_models_dir_files_and_subdirectories(tmp_path, cache):
    d = tmp_path / "models"
    (d / "gemma-3-4b").mkdir(parents=True)
    for f in ["llama-1b-Q4_K_M.gguf", "mmproj-F16.gguf", "mtp-draft.gguf", "notes.txt",
              "gemma-3-4b/gemma-3-4b-Q8_0.gguf", "gemma-3-4b/mmproj-F16.gguf", "gemma-3-4b/mtp-x.gguf"]:
        (d / f).write_bytes(b"")
    (d / "kimi").mkdir()
    for i in (1, 2):
        (d / "kimi" / f"kimi-0000{i}-of-00002.gguf").write_bytes(b"")
    (d / "empty").mkdir()
    found = catalog.scan_models_dir(str(d))
    assert sorted(found) == ["gemma-3-4b", "kimi", "llama-1b-Q4_K_M"]
    assert found["gemma-3-4b"].mmproj == str(d / "gemma-3-4b" / "mmproj-F16.gguf")
    assert found["gemma-3-4b"].model_args == ["-m", str(d / "gemma-3-4b" / "gemma-3-4b-Q8_0.gguf")]
    assert found["kimi"].model_args[1].endswith("kimi-00001-of-00002.gguf")
    with pytest.raises(PresetError, match="does not exist or is not a directory"):
        catalog.scan_models_dir(str(d / "nope"))


def test_presets_add_options_new_models_and_hide_cache_duplicates(tmp_path, cache):
    fake_cache(cache, "u/r", ["r-Q4_K_M.gguf", "r-Q8_0.gguf"])
    fake_cache(cache, "u/s", ["s-Q8_0.gguf"])
    d = tmp_path / "models"
    d.mkdir()
    (d / "local.gguf").write_bytes(b"")
    ini = tmp_path / "p.ini"
    ini.write_text("[*]\nc = 128\n[local]\nc = 256\nload-on-startup = 1\nstop-timeout = 3\n"
                   "[mine]\nhf-repo = u/r\nspec-draft-hf = u/s\ndedup-cache-models = 1\n")
    found = catalog.build(str(d), str(ini))
    assert sorted(n for n, e in found.items() if not e.hidden) == ["local", "mine", "u/r:Q8_0"]
    assert found["u/r:Q4_K_M"].hidden  # -hf u/r picks Q4_K_M: the preset serves that file
    assert found["u/s:Q8_0"].hidden  # and its draft model's repository
    local = found["local"]
    assert local.source == "preset" and local.options == {"c": "256", "load-on-startup": "1", "stop-timeout": "3"}
    assert local.load_on_startup and local.stop_timeout == 3.0 and local.model_args[0] == "-m"
    assert found["mine"].model_args == [] and found["mine"].options["hf-repo"] == "u/r"
    assert not found["u/s:Q8_0"].load_on_startup and found["u/s:Q8_0"].stop_timeout == 10.0
    ini.write_text("[ghost]\nc = 1\n")
    with pytest.raises(PresetError, match=r"\[ghost\] names no model file"):
        catalog.build(None, str(ini))


def test_removing_a_cache_model_deletes_its_files_only(cache):
    fake_cache(cache, "u/r", ["r-Q4_K_M-00001-of-00002.gguf", "r-Q4_K_M-00002-of-00002.gguf", "r-Q8_0.gguf"])
    found = catalog.scan_cache()
    e = found["u/r:Q4_K_M"]
    assert len(e.files) == 2
    blobs = [os.path.realpath(f) for f in e.files]
    assert catalog.remove_cached(e) is True
    assert not any(os.path.lexists(f) for f in e.files) and not any(os.path.exists(b) for b in blobs)
    assert sorted(catalog.scan_cache()) == ["u/r:Q8_0"]  # the other tag stays
    assert catalog.remove_cached(e) is False
