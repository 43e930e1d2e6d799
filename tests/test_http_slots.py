"""Slot actions: save a slot's prompt cache, erase it, restore it into another slot, reuse it."""

from __future__ import annotations

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
