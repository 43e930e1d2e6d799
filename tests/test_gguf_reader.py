"""The GGUF reader against gguf's own writer and reader, and on broken files."""

import struct

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T, GGUFReader, GGUFWriter

from service.gguf_reader import GGUFError, read_gguf
from tests.oracles.quant_blocks import random_matrix


def write_tiny(path, extra=None):
    w = GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "ü"])
    w.add_array("tokenizer.ggml.scores", [0.5, -1.0, 2.0])
    rng = np.random.default_rng(0)
    w.add_tensor("norm", rng.standard_normal(64).astype(np.float32))
    q = random_matrix(T.Q4_0, 3, 64, rng)
    w.add_tensor("mat", q, raw_dtype=T.Q4_0)
    for name, arr in (extra or {}).items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return q


def test_matches_gguf_reader(tmp_path):
    p = tmp_path / "t.gguf"
    q = write_tiny(p)
    f = read_gguf(p)
    assert f.metadata["general.architecture"] == "llama"
    assert f.metadata["llama.block_count"] == 2
    assert f.metadata["tokenizer.ggml.add_bos_token"] is True
    assert f.metadata["tokenizer.ggml.tokens"] == ["a", "b", "ü"]
    np.testing.assert_array_equal(f.metadata["tokenizer.ggml.scores"], np.float32([0.5, -1.0, 2.0]))
    ref = {t.name: t for t in GGUFReader(p).tensors}
    for name, t in f.tensors.items():
        assert t.qtype == ref[name].tensor_type
        assert np.array_equal(f.data(name).view(np.uint8).reshape(-1), ref[name].data.view(np.uint8).reshape(-1))
    assert np.array_equal(f.data("mat"), q)
    assert f.tensors["mat"].shape == (64, 3)


def test_real_models_parse_like_gguf(tmp_path):
    from pathlib import Path

    p = Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    f = read_gguf(p)
    ref = GGUFReader(p)
    assert len(f.tensors) == len(ref.tensors)
    for t in ref.tensors[:20]:
        assert f.tensors[t.name].offset == t.data_offset
        assert f.tensors[t.name].nbytes == t.n_bytes


def _corrupt(tmp_path, mutate):
    p = tmp_path / "t.gguf"
    write_tiny(p)
    data = bytearray(p.read_bytes())
    data = mutate(data)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda d: b"GGUX" + d[4:], "magic"),
        (lambda d: d[:4] + struct.pack("<I", 9) + d[8:], "version"),
        (lambda d: d[:100], "truncated"),
        (lambda d: d[:-30], "runs past the end"),  # the file ends with 20 bytes of padding
        (lambda d: d[:8] + struct.pack("<Q", 1 << 40) + d[16:], "absurd"),
        (lambda d: b"", "cannot map"),
    ],
)
def test_broken_files_name_the_problem(tmp_path, mutate, needle):
    bad = _corrupt(tmp_path, mutate)
    with pytest.raises(GGUFError) as e:
        read_gguf(bad)
    assert str(bad) in str(e.value) and needle in str(e.value)


def test_unknown_tensor_type(tmp_path):
    p = tmp_path / "t.gguf"
    write_tiny(p)
    data = bytearray(p.read_bytes())
    # the "mat" tensor info: name, n_dims=2, dims (64, 3), type (Q4_0 = 2), offset
    i = data.index(b"mat") + 3 + 4 + 16
    assert struct.unpack_from("<I", data, i)[0] == int(T.Q4_0)
    struct.pack_into("<I", data, i, 250)
    (tmp_path / "b.gguf").write_bytes(bytes(data))
    with pytest.raises(GGUFError, match="mat.type: unknown tensor type 250"):
        read_gguf(tmp_path / "b.gguf")


def test_string_array_errors_name_the_item(tmp_path):
    """The bulk string-array parse reports a bad item as the item-by-item parse did."""
    p = tmp_path / "t.gguf"
    write_tiny(p)
    data = bytearray(p.read_bytes())
    i = data.index(b"\x01\x00\x00\x00\x00\x00\x00\x00b")  # the length of token 1, "b"
    bad_utf8 = data[: i + 8] + b"\xff" + data[i + 9 :]
    (tmp_path / "u.gguf").write_bytes(bytes(bad_utf8))
    with pytest.raises(GGUFError, match=r"tokenizer\.ggml\.tokens\[1\]: string is not valid UTF-8"):
        read_gguf(tmp_path / "u.gguf")
    too_long = data[:i] + struct.pack("<Q", len(data)) + data[i + 8 :]
    (tmp_path / "l.gguf").write_bytes(bytes(too_long))
    with pytest.raises(GGUFError, match=r"tokenizer\.ggml\.tokens\[1\]: truncated file"):
        read_gguf(tmp_path / "l.gguf")


def test_read_is_shared_until_the_file_changes(tmp_path):
    p = tmp_path / "t.gguf"
    write_tiny(p)
    f = read_gguf(p)
    assert read_gguf(str(p)) is f  # a server start reads its model twice: parsed once
    write_tiny(p, {"extra": np.zeros(32, np.float32)})
    g = read_gguf(p)
    assert g is not f and "extra" in g.tensors


def test_an_unused_file_is_not_kept(tmp_path):
    """The memo holds files only while someone does: an unloaded model releases its map."""
    import gc
    import weakref

    p = tmp_path / "t.gguf"
    write_tiny(p)
    ref = weakref.ref(read_gguf(p))
    gc.collect()
    assert ref() is None


def _rss_file_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile"))


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="no madvise here")
def test_release_drops_a_tensors_pages_and_keeps_its_view():
    """release(name): the tensor's file pages leave the process's RSS (the packed copy replaced
    them), and the view handed out before still reads the same bytes (faulted back in)."""
    from tests.server_proc import SMOLLM2

    f = read_gguf(SMOLLM2)
    name = "token_embd.weight"  # 49152 x 576 Q4_1: 27 MiB
    view = f.data(name)
    digest = int(view.astype(np.uint64).sum())  # touches every page
    touched = _rss_file_kib()
    f.release(name)
    released = _rss_file_kib()
    assert touched - released > 0.9 * f.tensors[name].nbytes / 1024, (touched, released)
    assert int(view.astype(np.uint64).sum()) == digest
