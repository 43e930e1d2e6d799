"""--cache-reuse N and a request's n_cache_reuse on a real server (SmolLM2, f16 cache): after a
prompt P + X + S, the prompt P + S + Z finds S in the slot's cache past the common prefix P and
moves it into place by a K-shift instead of evaluating it again (llama-server's chunk reuse, what
editor plugins rely on when text is cut out of a long prompt). The answer is the one the whole
prompt gives when evaluated afresh; a chunk shorter than N, n_cache_reuse 0, or a prompt that
inserts text instead of removing it reuses only the common prefix."""

from __future__ import annotations

import json

import pytest

from tests.served import module_server

MIN_CHUNK = 8
# -cram 0: no RAM prompt cache, which would hand back an earlier test's whole prompt; -v: the debug log
reusing = module_server("reusing", "-c", "1024", "-np", "1", "-cram", "0", "--cache-reuse", str(MIN_CHUNK), "-v")

TEXTS = {
    "P": "You are a careful assistant that completes code. Here is the file:\n",
    "X": "import os\nimport sys\nfrom pathlib import Path\n\n",
    "S": "def area(width, height):\n    \"\"\"The area of a rectangle.\"\"\"\n    return width * height\n\n\n"
         "def perimeter(width, height):\n    return 2 * (width + height)\n",
    "Z": "\n\ndef diagonal(width, height):\n",
}


@pytest.fixture(scope="module")
def parts(reusing) -> dict[str, list[int]]:
    with reusing.client() as c:
        out = {k: c.post("/tokenize", json={"content": v, "add_special": k == "P"}).json()["tokens"]
               for k, v in TEXTS.items()}
    assert len(out["S"]) > 3 * MIN_CHUNK and len(out["X"]) >= 4
    return out


def run(c, prompt: list[int], **kw) -> dict:
    r = c.post("/completion", json={"prompt": prompt, "n_predict": 8, "temperature": 0, "n_probs": 3,
                                    "return_tokens": True, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def reuse_events(server) -> list[dict]:
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == "reusing a cached chunk"]


def test_a_chunk_cut_out_of_the_prompt_is_shifted_into_place(reusing, parts):
    p, x, s, z = parts["P"], parts["X"], parts["S"], parts["Z"]
    with reusing.client() as c:
        run(c, p + x + s, n_predict=1)
        seen = len(reuse_events(reusing))
        got = run(c, p + s + z)
        fresh = run(c, p + s + z, cache_prompt=False)  # the same prompt, every token evaluated
    t = got["timings"]
    assert (t["cache_n"], t["prompt_n"]) == (len(p) + len(s), len(z))
    assert fresh["timings"]["cache_n"] == 0
    ev = reuse_events(reusing)[seen:]
    assert [(e["src"], e["dst"]) for e in ev] == [([len(p) + len(x), len(p) + len(x) + len(s)],
                                                   [len(p), len(p) + len(s)])]
    # The same greedy answer as the fresh evaluation, but not the same numbers: S's cached states were
    # computed after X (the shift only corrects their positions), in llama-server as here. Measured:
    # log-probabilities within 0.34 of the fresh run's, where the prompt with X kept gives other tokens.
    assert got["tokens"] == fresh["tokens"] and got["content"] == fresh["content"]


@pytest.mark.parametrize("n_cache_reuse", [0, 10_000])
def test_off_or_a_chunk_shorter_than_asked_keeps_only_the_prefix(reusing, parts, n_cache_reuse):
    p, x, s, z = parts["P"], parts["X"], parts["S"], parts["Z"]
    with reusing.client() as c:
        run(c, p + x + s, n_predict=1)
        got = run(c, p + s + z, n_cache_reuse=n_cache_reuse)
    assert (got["timings"]["cache_n"], got["timings"]["prompt_n"]) == (len(p), len(s) + len(z))


def test_inserted_text_is_not_found(reusing, parts):
    """Only cached tokens are skipped in the search, never the prompt's: S after an insertion
    is evaluated again, as llama-server does."""
    p, x, s, z = parts["P"], parts["X"], parts["S"], parts["Z"]
    with reusing.client() as c:
        run(c, p + s, n_predict=1)
        got = run(c, p + x + s + z)
    assert got["timings"]["cache_n"] == len(p)


def test_a_negative_n_cache_reuse_is_refused(reusing, parts):
    with reusing.client() as c:
        r = c.post("/completion", json={"prompt": parts["P"], "n_predict": 1, "n_cache_reuse": -1})
        assert r.status_code == 400 and "n_cache_reuse" in r.json()["error"]["message"]
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert c.get("/health").status_code == 200
