"""service/vision (mmproj loading, image preprocessing, the encoder) against llama.cpp's mtmd: the rows
llama.cpp's projector produced for the fixture's images (tests/fixtures/record_vision.py).

Measured differences (max |ours - llama.cpp| over 16 x 640 rows whose largest is ~1.5): PNG 4e-4 to
6e-4 (ggml's F16 tables for GELU and F16 attention), JPEG 2e-3 to 6e-3 (Pillow's and stb_image's JPEG
decoders differ by a grey level here and there). Bounds: 2e-3 (PNG), 1.5e-2 (JPEG).
"""

import numpy as np
import pytest

from service.vision.encoder import VisionEncoder
from service.vision.image import ImageError, decode_rgb, fit_square, preprocess
from service.vision.mmproj import MmprojError, load_mmproj
from tests.vision_files import image, llama_embd, tiny_mmproj


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_mmproj(tiny_mmproj(tmp_path_factory.mktemp("mm") / "tiny.gguf"), 640)


def test_hparams(model):
    assert (model.projector, model.image_size, model.patch_size, model.n_embd, model.merge) == ("gemma3", 64, 8, 64, 2)
    assert model.n_tokens == 16 and len(model.blocks) == 2


@pytest.mark.parametrize("name", ["png64", "png96x48", "png37x53", "jpg80x120", "jpg200x150"])
def test_encoder_matches_llama_cpp(model, name):
    ref = llama_embd()[name]
    got = VisionEncoder(model).encode(preprocess(image(name), model.image_size, model.mean, model.std))
    bound = 2e-3 if name.startswith("png") else 1.5e-2
    assert got.shape == ref.shape == (16, 640)
    assert np.abs(got - ref).max() < bound


def test_fit_square_pads_centred_black():
    px = np.full((48, 96, 3), 200, np.uint8)  # 2:1 -> 64 x 32, rows 16..47
    out = fit_square(px, 64)
    assert out.shape == (64, 64, 3)
    assert (out[:16] == 0).all() and (out[48:] == 0).all() and (out[16:48] == 200).all()
    tall = fit_square(np.full((53, 37, 3), 9, np.uint8), 64)  # 37*64/53 = 44.7 -> 45 wide, offset 9
    assert (tall[:, :9] == 0).all() and (tall[:, 9:54] == 9).all() and (tall[:, 54:] == 0).all()


@pytest.mark.parametrize("data", [b"", b"not an image", image("png64")[:60]])
def test_bad_images(data):
    with pytest.raises(ImageError):
        decode_rgb(data)


def test_decompression_bomb_refused_before_decoding():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")  # a few KB that would decode to 400 M pixels
    with pytest.raises(ImageError, match="too large"):
        decode_rgb(buf.getvalue())


def test_projector_for_another_width_is_refused(tmp_path):
    with pytest.raises(MmprojError, match="another model"):
        load_mmproj(tiny_mmproj(tmp_path / "w.gguf", 576), 640)
