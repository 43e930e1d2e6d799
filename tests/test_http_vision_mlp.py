"""Images through a real server with an `mlp` (LLaVA-style) projector (Gemma 3 270M + the tiny projector of
tests/fixtures/make_tiny_mlp_mmproj.py), against llama.cpp's llama-server on the same files
(tests/fixtures/record_vision_mlp.py): the prompt token counts are equal (64 rows per image, no marker
tokens); the first generated position's top-5 logprobs are within the case's bound of llama.cpp's; the
greedy tokens are equal until llama.cpp's top two are within twice that bound (where the bound allows
a swap; the comparison stops there).

The bounds, from measurements: with llama.cpp's own projector rows in place of ours (a throwaway patch,
not in the tree) our text model's first-position logprobs differ from llama.cpp's by up to 0.31 on
these prompts (0.35 text-only, test_http_vision.py: its int8 activations). With our rows: PNG-only
cases up to 0.23 (rows within 6e-3 of llama.cpp's, test_vision_mlp.py), so PNG_BOUND 0.4; cases with a
JPEG up to 0.40 on /completion and 0.52 on chat (Pillow's and stb_image's JPEG decoders differ by a grey
level here and there; the random CLIP carries that to rows 0.08 apart), so JPEG_BOUND 0.75. A projector
fed from the wrong layer (the file rewritten to say 2 blocks, so that one runs instead of two) misses
the PNG bound.
"""

from __future__ import annotations

import pytest

from tests.vision_mlp_files import fixture, rewrite, tiny_mlp_mmproj
from tests.vision_server import check_modalities, complete, openai_chat, serve, top

PNG_BOUND, JPEG_BOUND = 0.4, 0.75
FIX = fixture()
COMPLETIONS = [c for c in FIX["cases"] if c["route"] == "completion"]


def bound(case: dict) -> float:
    return PNG_BOUND if all(n.startswith("png") for n in case["images"]) else JPEG_BOUND


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = serve(tiny_mlp_mmproj(tmp_path_factory.mktemp("mm") / "tiny_mlp.gguf"), FIX)
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def _first_diff(top: list, ref: list) -> float:
    """The largest |logprob difference| over the tokens of llama.cpp's first-position top 5 that ours has."""
    ours = {k: v for k, v in top[0]}
    common = [(ours[k], v) for k, v in ref[0] if k in ours]
    assert len(common) >= 4, (top[0], ref[0])
    return max(abs(a - b) for a, b in common)


def _check_probs(top: list, ref: list, b: float) -> None:
    """top, ref: per position [[id or piece, logprob] x 5]; b: the case's bound."""
    assert _first_diff(top, ref) < b, (top[0], ref[0])
    for i, (pt, pr) in enumerate(zip(top, ref)):  # greedy: equal until llama.cpp's top two are within 2 b
        if pr[0][1] - pr[1][1] < 2 * b:
            break
        assert pt[0][0] == pr[0][0], (i, pt, pr)


def test_modalities(server):
    check_modalities(server, FIX)


@pytest.mark.parametrize("case", COMPLETIONS, ids=lambda c: "+".join(c["images"]))
def test_completion_matches_llama_cpp(server, case):
    r = complete(server, FIX, case)
    assert r["tokens_evaluated"] == case["n_prompt"]
    _check_probs(top(r), case["top"], bound(case))


@pytest.mark.parametrize("case", [c for c in FIX["cases"] if c["route"] == "chat"], ids=lambda c: c["images"][0])
def test_openai_chat_matches_llama_cpp(server, case):
    n_prompt, chat_top = openai_chat(server, FIX, case)
    assert n_prompt == case["n_prompt"]
    _check_probs(chat_top, case["top"], bound(case))


def test_wrong_feature_layer_misses_the_bound(server, tmp_path):
    """The same weights with clip.vision.block_count 2: one block feeds the projector instead of two. The
    PNG cases' first positions then differ from llama.cpp's by more than the bound (or their top tokens do)."""
    bad = rewrite(tiny_mlp_mmproj(tmp_path / "good.gguf"), tmp_path / "bad.gguf", clip__vision__block_count=2)
    s = serve(bad, FIX)
    try:
        s.wait_ready()
        worst = 0.0
        for case in (c for c in COMPLETIONS if bound(c) == PNG_BOUND):
            r = complete(s, FIX, case)
            assert r["tokens_evaluated"] == case["n_prompt"]
            ours, ref = top(r), case["top"]
            shared = sum(k in dict(ours[0]) for k, _ in ref[0])
            off = ours[0][0][0] != ref[0][0][0] and ref[0][0][1] - ref[0][1][1] > 2 * PNG_BOUND
            worst = max(worst, float("inf") if off or shared < 4 else _first_diff(ours, ref))
        assert worst > PNG_BOUND, worst
    finally:
        s.stop()
