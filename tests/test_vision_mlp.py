"""The `mlp` projector type (service.vision.llava) against llama.cpp's mtmd: the rows llama.cpp's projector
produced for the fixture's images (tests/fixtures/record_vision_mlp.py, the tiny projector of
tests/fixtures/make_tiny_mlp_mmproj.py).

Measured differences (max |ours - llama.cpp| over 64 x 640 rows whose largest is ~11, median ~1.4):
PNG 5.7e-3 to 6.3e-3 (relative 5e-4: F16 rounding of each matrix's inputs, which flips where the two sides
differ by an ulp, ggml's F16 tables for GELU and quick GELU, and its F16 K/V in flash attention; emulating
the tables and K/V brought it only to 4.3e-3), JPEG 7.1e-2 to 7.7e-2 (Pillow's and stb_image's JPEG
decoders differ by a grey level here and there). Bounds: 1.2e-2 (PNG), 0.15 (JPEG). Each breakage below
(a wrong feature layer, padding, resampling, class row or pre-norm) moves the PNG rows by far more.
"""

import dataclasses

import numpy as np
import pytest

from service.gguf_reader import read_gguf
from service.vision.image import fit_square, preprocess
from service.vision.llava import LlavaEncoder, LlavaModel
from service.vision.media import Media, media_marker
from service.vision.mmproj import MmprojError, load_mmproj, read_blocks
from tests.vision_mlp_files import image, llama_embd, tiny_mlp_mmproj

NAMES = ["png64", "png96x48", "png37x53", "jpg80x120", "jpg200x150"]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return tiny_mlp_mmproj(tmp_path_factory.mktemp("mm") / "tiny_mlp.gguf")


@pytest.fixture(scope="module")
def model(path):
    return load_mmproj(path, 640)


def _encode(m: LlavaModel, name: str, resample: str | None = None, fill=None) -> np.ndarray:
    img = preprocess(image(name), m.image_size, m.mean, m.std, resample or m.resample,
                     m.pad_color if fill is None else fill)
    return LlavaEncoder(m).encode(img)


def test_hparams(model):
    assert isinstance(model, LlavaModel)
    assert (model.projector, model.image_size, model.patch_size, model.n_embd, model.n_tokens) == ("mlp", 64, 8, 64, 64)
    assert len(model.blocks) == 2  # of the file's 3: the projector reads the second-to-last layer
    assert model.quick_gelu and model.class_embd.shape == (64,) and model.pre_ln_w.size == 64
    assert (model.resample, model.pad_color, model.markers, model.non_causal) == ("bicubic", (122, 116, 104), None, False)


@pytest.mark.parametrize("name", NAMES)
def test_encoder_matches_llama_cpp(model, name):
    ref = llama_embd()[name]
    got = _encode(model, name)
    assert got.shape == ref.shape == (64, 640)
    assert np.abs(got - ref).max() < (1.2e-2 if name.startswith("png") else 0.15)


def _all_blocks(model, path):
    return dataclasses.replace(model, blocks=read_blocks(read_gguf(path), path, 3, model.n_embd))


@pytest.mark.parametrize("breakage", ["last layer", "black padding", "bilinear", "class row first", "no pre-norm"])
def test_breakages_miss_the_bound(model, path, breakage):
    """What a plausible mistake does to the PNG rows: each misses the bound by far."""
    name = "png96x48" if breakage in ("black padding", "bilinear") else "png64"
    m = model
    if breakage == "last layer":
        m = _all_blocks(model, path)
    elif breakage == "no pre-norm":
        m = dataclasses.replace(model, pre_ln_w=np.zeros(0, np.float32))
    elif breakage == "class row first":  # as Hugging Face's CLIP orders it: class row 0, then the patches
        m = dataclasses.replace(model, pos_embd=np.roll(model.pos_embd, -1, axis=0))
    got = _encode(m, name, resample="bilinear" if breakage == "bilinear" else None,
                  fill=(0, 0, 0) if breakage == "black padding" else None)
    assert np.abs(got - llama_embd()[name]).max() > 10 * 1.2e-2


def test_fit_square_pads_with_the_llava_grey():
    out = fit_square(np.full((48, 96, 3), 200, np.uint8), 64, "bicubic", (122, 116, 104))
    assert (out[:16] == [122, 116, 104]).all() and (out[48:] == [122, 116, 104]).all()
    assert (out[16:48] == 200).all()  # bicubic of a flat image is flat


def test_prompt_layout_has_no_markers_and_causal_rows(model):
    """mtmd puts an mlp projector's rows between the text pieces with no begin/end tokens."""
    seen = []

    def tokenize(s):
        seen.append(s)
        return [ord(c) for c in s]

    media = Media(model, tokenize, bos=1)
    marker = media_marker()
    p = media.prompt(f"ab{marker}c", [image("png64")])
    assert seen == ["ab", "c"]
    assert p[:3] == [1, ord("a"), ord("b")] and p[-1] == ord("c") and len(p) == 4 + 64
    assert all(t < 0 for t in p[3:67]) and len(set(p[3:67])) == 1
    (chunk,) = p.images
    assert chunk.pos == 3 and chunk.embd.shape == (64, 640) and chunk.non_causal is False


def test_projector_for_another_width_is_refused(tmp_path):
    with pytest.raises(MmprojError, match="another model"):
        load_mmproj(tiny_mlp_mmproj(tmp_path / "w.gguf", 576), 640)


def test_llava_next_keys_are_refused(tmp_path, path):
    import gguf

    src = read_gguf(path)
    w = gguf.GGUFWriter(str(tmp_path / "next.gguf"), "clip")
    for k, v in src.metadata.items():
        if k.startswith("clip."):
            if isinstance(v, bool):
                w.add_bool(k, v)
            elif isinstance(v, str):
                w.add_string(k, v)
            elif isinstance(v, (list, tuple, np.ndarray)):
                w.add_array(k, list(map(float, v)))
            elif isinstance(v, float):
                w.add_float32(k, v)
            else:
                w.add_uint32(k, int(v))
    w.add_array("clip.vision.image_grid_pinpoints", [336, 672])
    w.add_tensor("x", np.zeros(4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(MmprojError, match="image_grid_pinpoints"):
        load_mmproj(tmp_path / "next.gguf", 640)
