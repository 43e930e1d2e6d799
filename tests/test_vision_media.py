"""service/vision/media.py (a multimodal prompt's layout, as llama.cpp's mtmd lays out gemma3 images) and how
the engine batches it (service/engine/scheduler.py, slot.py): an image's rows never split between batches,
go in as embedding rows, and attend to each other (their mask position is the image's last)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from service.api.media import image_bytes, take_images
from service.api.errors import ApiError
from service.engine.scheduler import build_batch
from service.engine.slot import Slot, SlotState
from service.engine.task import TaskParams
from service.vision import media as M
from service.vision.mmproj import load_mmproj
from tests.vision_files import image, tiny_mmproj

SPECIAL = {"<start_of_image>": [7], "<end_of_image>": [8]}


def fake_tokenize(s: str) -> list[int]:
    return SPECIAL.get(s) or [100 + ord(c) % 50 for c in s]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    vm = load_mmproj(tiny_mmproj(tmp_path_factory.mktemp("mm") / "tiny.gguf"), 640)
    return M.Media(vm, fake_tokenize, bos=2)


def test_layout_as_mtmd(media):
    mk = M.media_marker()
    p = media.prompt(f"ab{mk}c{mk}", [image("png64"), image("jpg80x120")])
    a, b = M.placeholder_id(image("png64")), M.placeholder_id(image("jpg80x120"))
    assert a < 0 and b < 0 and a != b
    assert list(p) == [2, *fake_tokenize("ab"), 7, *[a] * 16, 8, *fake_tokenize("c"), 7, *[b] * 16, 8]
    assert [c.pos for c in p.images] == [4, 23] and all(c.embd.shape == (16, 640) for c in p.images)
    assert not np.array_equal(p.images[0].embd, p.images[1].embd)
    assert list(media.prompt(mk, [image("png64")], add_bos=False))[:1] == [7]


def test_marker_count_and_bad_images_are_client_errors(media):
    with pytest.raises(M.MediaError, match="Failed to tokenize prompt"):
        media.prompt("no marker", [image("png64")])
    with pytest.raises(M.MediaError, match="Failed to load image"):
        media.prompt(M.media_marker(), [b"GIF89a broken"])


def test_image_urls_and_parts():
    assert image_bytes("data:image/png;base64,aGVsbG8=") == b"hello"
    for url, msg in [("http://127.0.0.1:9/a.png", "Failed to download image"), ("data:image/png,abc", "base64 encoded"),
                     ("data:text/plain;base64,aGk=", "Invalid uri format"), ("file:///etc/passwd", "--media-path"),
                     ("data:audio/wav;base64,aGk=", "audio input is not supported")]:
        with pytest.raises(ApiError, match=msg):
            image_bytes(url)
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}]}]
    with pytest.raises(ApiError, match="image input is not supported - hint"):  # llama-server's words, no --mmproj
        take_images(msgs, None)
    out, files = take_images(msgs, object())
    assert files == [b"hi"] and out[0]["content"][1] == {"type": "media_marker", "text": M.media_marker()}


def test_routes_that_drop_the_images_refuse_image_prompts(media):
    from service.api.params import ParamBuilder

    b = SimpleNamespace(n_ctx=512)
    p = media.prompt(f"a{M.media_marker()}", [image("png64")])
    ParamBuilder.check_context(b, p, media_ok=True)  # a task that carries the images
    for tokens in (p, list(p)):  # /embeddings, /infill: the rows would be lost
        with pytest.raises(ApiError, match="multimodal data is not supported on this route"):
            ParamBuilder.check_context(b, tokens)


def _prompting(prompt: list[int], images) -> Slot:
    s = Slot(0, 256)
    s.state = SlotState.PROMPT
    s.gen = SimpleNamespace(params=TaskParams(prompt=tuple(prompt), images=tuple(images)), lora=(),
                            prompt_evaluated=lambda n: None)
    return s


def test_batches_never_split_an_image_and_carry_its_rows(media):
    p = media.prompt(f"abcde{M.media_marker()}xy", [image("png37x53")])  # BOS a..e <soi> [6+1 .. 23) <eoi> x y
    s = _prompting(list(p), p.images)
    batch, rows = build_batch([s], 10)
    assert batch.tokens.tolist() == list(p[:7]) and batch.embd is None  # stops before the image
    s.prompt_done(7)
    assert build_batch([s], 10) is None  # 16 rows do not fit 10: wait for room
    batch, rows = build_batch([s], 32)
    im = p.images[0]
    assert rows[0][1] == len(p) - 7 and batch.embd_mask.tolist() == [True] * 16 + [False] * 3
    np.testing.assert_array_equal(batch.embd[:16], im.embd)
    assert (batch.tokens[:16] == 0).all() and batch.tokens[16:].tolist() == list(p[23:])
    assert batch.attn_pos.tolist() == [22] * 16 + [23, 24, 25]  # non-causal within the image
    assert batch.pos.tolist() == list(range(7, 26))


def test_a_resumed_cache_inside_an_image_takes_the_rest_whole(media):
    p = media.prompt(f"a{M.media_marker()}", [image("png64")])  # BOS a <soi> [3 .. 19) <eoi>
    s = _prompting(list(p), p.images)
    s.i_prompt = 10  # the cache held the image's first 7 rows (the same image: same placeholder ids)
    batch, _ = build_batch([s], 64)
    assert batch.embd_mask.tolist() == [True] * 9 + [False]
    np.testing.assert_array_equal(batch.embd[:9], p.images[0].embd[7:])
    assert batch.attn_pos.tolist() == [18] * 9 + [19]
