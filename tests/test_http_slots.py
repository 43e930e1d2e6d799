"""Slot actions: save a slot's prompt cache, erase it, restore it into another slot, reuse it;
files that must not be restored (corrupt, another model's, too long, outside --slot-save-path);
an action on a busy slot."""

from __future__ import annotations

import json

import pytest

from tests.server_proc import ServerProcess

PROMPT = "The three laws of robotics are the following. First,"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("slots")
    s = ServerProcess("-c", "1024", "-np", "2", "--slot-save-path", str(d))
    try:
        yield s.wait_ready(), d
    finally:
        s.stop()


def test_save_erase_restore_and_reuse(server):
    s, d = server
    with s.client() as c:
        c.post("/completion", json={"prompt": PROMPT, "n_predict": 8, "temperature": 0, "id_slot": 0})
        # the reference answer reads the prompt from the cache (all but its last token), as the
        # restored slot will: a prompt evaluated whole can differ from it in the last bits of its
        # logits, and so in a greedy choice at a near-tie
        first = c.post("/completion", json={"prompt": PROMPT, "n_predict": 8, "temperature": 0, "id_slot": 0}).json()
        assert first["tokens_cached"] == first["tokens_evaluated"] - 1
        saved = c.post("/slots/0?action=save", json={"filename": "robots.bin"}).json()
        assert saved["id_slot"] == 0 and saved["n_saved"] == first["tokens_evaluated"] + 7
        assert (d / "robots.bin").stat().st_size == saved["n_written"]
        erased = c.post("/slots/0?action=erase").json()
        assert erased == {"id_slot": 0, "n_erased": saved["n_saved"]}
        restored = c.post("/slots/1?action=restore", json={"filename": "robots.bin"}).json()
        assert restored["n_restored"] == saved["n_saved"]
        again = c.post("/completion", json={"prompt": PROMPT, "n_predict": 8, "temperature": 0, "id_slot": 1}).json()
        assert again["tokens_cached"] == first["tokens_evaluated"] - 1
        assert again["content"] == first["content"]


def test_bad_slot_actions(server):
    s, _ = server
    with s.client() as c:
        for path, body in [("/slots/0?action=save", {"filename": "../escape"}), ("/slots/0?action=save", {}),
                           ("/slots/9?action=erase", {}), ("/slots/x?action=erase", {}),
                           ("/slots/0?action=fly", {}), ("/slots/0?action=restore", {"filename": "missing.bin"})]:
            r = c.post(path, json=body)
            assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (path, r.text)
        assert c.get("/health").status_code == 200


def _cached(c, sid: int) -> int:
    """How many tokens slot sid holds in its cache (/slots' n_prompt_tokens, once the slot has had a task)."""
    return c.get("/slots").json()[sid]["n_prompt_tokens"]


def _fill(c, sid: int) -> dict:
    """Give slot sid PROMPT's cache (prompt + 8 generated), return the completion."""
    return c.post("/completion", json={"prompt": PROMPT, "n_predict": 8, "temperature": 0, "id_slot": sid}).json()


def _refused(c, sid: int, name: str) -> str:
    r = c.post(f"/slots/{sid}?action=restore", json={"filename": name})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (name, r.text)
    return r.json()["error"]["message"]


def test_restore_refuses_unreadable_files_and_leaves_the_slot_as_it_was(server):
    """A corrupt file (garbage, a truncated save, a bare .npy, an archive missing a member, token
    ids of the wrong type) is a 400 naming the file, and the slot keeps the cache it had."""
    import io
    import zipfile

    import numpy as np

    s, d = server
    with s.client() as c:
        _fill(c, 0)
        good = c.post("/slots/0?action=save", json={"filename": "good.bin"}).json()
        whole = (d / "good.bin").read_bytes()
        (d / "garbage.bin").write_bytes(b"\x00not a slot file\xff" * 64)
        (d / "truncated.bin").write_bytes(whole[: len(whole) // 2])
        (d / "empty.bin").write_bytes(b"")
        buf = io.BytesIO()
        np.save(buf, np.arange(10))
        (d / "bare.npy").write_bytes(buf.getvalue())
        with np.load(d / "good.bin") as z:
            parts = {k: z[k] for k in z.files}
        with open(d / "no_values.bin", "wb") as f:
            np.savez(f, tokens=parts["tokens"], k=parts["k"])
        with open(d / "float_tokens.bin", "wb") as f:
            np.savez(f, tokens=parts["tokens"].astype(np.float32) + 0.5, k=parts["k"], v=parts["v"])
        with zipfile.ZipFile(d / "zip_of_text.bin", "w") as z:
            z.writestr("tokens.npy", "hello")
        _fill(c, 1)
        before = _cached(c, 1)
        assert before == good["n_saved"]
        for name in ("garbage.bin", "truncated.bin", "empty.bin", "bare.npy", "no_values.bin", "float_tokens.bin",
                     "zip_of_text.bin"):
            assert name in _refused(c, 1, name)
            assert _cached(c, 1) == before, name
        again = _fill(c, 1)  # the slot's cache is intact: the prompt comes from it
        assert again["tokens_cached"] == again["tokens_evaluated"] - 1
        assert c.get("/health").status_code == 200


def test_restore_refuses_out_of_vocabulary_tokens(server):
    import numpy as np

    s, d = server
    with s.client() as c:
        _fill(c, 0)
        c.post("/slots/0?action=save", json={"filename": "vocab.bin"})
        with np.load(d / "vocab.bin") as z:
            parts = {k: z[k] for k in z.files}  # tokens, keys, values and the cache types
        tokens = parts["tokens"].copy()
        n_vocab = c.get("/v1/models").json()["data"][0]["meta"]["n_vocab"]
        for bad, name in ((n_vocab, "past_vocab.bin"), (-1, "negative.bin")):
            tokens[3] = bad
            with open(d / name, "wb") as f:
                np.savez(f, **{**parts, "tokens": tokens})
            assert "vocabulary" in _refused(c, 1, name)


def test_restore_refuses_a_file_from_another_model_or_a_larger_context(server):
    """Files that real servers saved: Gemma 3 (other layers and heads), and SmolLM2 with a 2048-token
    slot holding more tokens than this server's 512-token slots. Both are 400; the slot is unchanged."""
    from tests.server_proc import GEMMA3

    s, d = server
    gemma = ServerProcess("-c", "256", "-np", "1", "--slot-save-path", str(d), model=GEMMA3)
    try:
        with gemma.wait_ready().client() as g:
            assert g.post("/completion", json={"prompt": PROMPT, "n_predict": 4, "temperature": 0}).status_code == 200
            assert g.post("/slots/0?action=save", json={"filename": "gemma.bin"}).status_code == 200
    finally:
        gemma.stop()
    big = ServerProcess("-c", "2048", "-np", "1", "--slot-save-path", str(d))
    try:
        with big.wait_ready().client() as b:
            long = b.post("/completion", json={"prompt": " ".join(["robot"] * 600), "n_predict": 1}).json()
            assert long.get("tokens_evaluated", 0) > 512, long
            saved = b.post("/slots/0?action=save", json={"filename": "long.bin"}).json()
            assert saved["n_saved"] > 512
    finally:
        big.stop()
    with s.client() as c:
        _fill(c, 1)
        before = _cached(c, 1)
        for name in ("gemma.bin", "long.bin"):
            assert "does not fit" in _refused(c, 1, name)
            assert _cached(c, 1) == before
        again = _fill(c, 1)
        assert again["tokens_cached"] == again["tokens_evaluated"] - 1


def test_actions_on_a_busy_slot_wait_for_its_task(server):
    """llama-server defers a slot action on a busy slot until the slot's task ends: the restore
    succeeds, after the running generation, which it must not disturb (its text equals the same
    request's on a quiet slot); the slot then holds the file's tokens."""
    import concurrent.futures

    s, _ = server
    story = {"prompt": "Once upon a time", "n_predict": 400, "ignore_eos": True, "temperature": 0,
             "cache_prompt": False}
    with s.client() as c:
        _fill(c, 0)
        saved = c.post("/slots/0?action=save", json={"filename": "busy.bin"}).json()
        quiet = c.post("/completion", json={**story, "id_slot": 1}).json()
        with c.stream("POST", "/completion", json={**story, "id_slot": 1, "stream": True}) as r, \
                concurrent.futures.ThreadPoolExecutor(1) as ex:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert c.get("/slots").json()[1]["is_processing"]  # the stream holds slot 1 now
            with s.client() as c2:
                restoring = ex.submit(c2.post, "/slots/1?action=restore", json={"filename": "busy.bin"})
                rest = [first] + [line for line in lines if line.startswith("data: ")]
                restored = restoring.result(timeout=120)
        events = [json.loads(line[6:]) for line in rest]
        assert "".join(e["content"] for e in events) == quiet["content"]
        assert events[-1]["stop"] is True and events[-1]["tokens_predicted"] == 400
        assert restored.status_code == 200, restored.text
        assert restored.json()["n_restored"] == saved["n_saved"]
        assert _cached(c, 1) == saved["n_saved"]
        again = _fill(c, 1)
        assert again["tokens_cached"] == again["tokens_evaluated"] - 1


def test_path_traversal_is_refused_on_save_and_restore(server):
    """Only plain names inside --slot-save-path: a slot file one level up (or anywhere else) is
    never read, and a save never writes outside the directory."""
    s, d = server
    outside = d.parent / f"{d.name}-outside"
    outside.mkdir()
    with s.client() as c:
        _fill(c, 0)
        c.post("/slots/0?action=save", json={"filename": "escape.bin"})
        (outside / "escape.bin").write_bytes((d / "escape.bin").read_bytes())
        (d.parent / "escape.bin").write_bytes((d / "escape.bin").read_bytes())
        (d / "escape.bin").unlink()
        _fill(c, 1)
        c.post("/slots/1?action=erase")
        names = ["../escape.bin", f"../{outside.name}/escape.bin", str(outside / "escape.bin"), "..", ".",
                 "sub/escape.bin", "..\\escape.bin", "escape.bin/..", "%2e%2e%2fescape.bin", ""]
        for name in names:
            for action in ("restore", "save"):
                r = c.post(f"/slots/1?action={action}", json={"filename": name})
                assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (name, r.text)
        assert _cached(c, 1) == 0  # nothing was restored
        assert sorted(p.name for p in outside.iterdir()) == ["escape.bin"]  # nothing was written
        assert not (d.parent / "sub").exists() and not any(p.name.startswith("..") for p in d.iterdir())
