"""A prompt whose start another slot already holds takes those keys and values from it
(service.engine.memory.CacheKeeper.share_prefix): two users with one long system prompt on -np 2,
or a conversation that comes back on another slot. Checked on a real server (SmolLM2, no RAM
prompt cache so that only the slots hold anything): cache_n counts the copied prefix, the answer is
the one a fresh evaluation gives, a busy donor keeps generating its own answer unchanged, and a
prompt that shares nothing with the other slot copies nothing."""

from __future__ import annotations

import json
import threading

from tests.served import module_server

sharing = module_server("sharing", "-c", "1024", "-np", "2", "-cram", "0")

SYSTEM = ("You are a patient tutor. Answer in one short paragraph, use plain words, give one example, "
          "and never use lists. The student is learning about the water cycle and the weather.\n")


def run(c, prompt: str, slot: int, **kw) -> dict:
    r = c.post("/completion", json={"prompt": prompt, "id_slot": slot, "n_predict": 8, "temperature": 0,
                                    "return_tokens": True, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def n_tokens(c, text: str) -> int:
    return len(c.post("/tokenize", json={"content": text, "add_special": True}).json()["tokens"])


def copies(server) -> list[dict]:
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == "prompt prefix copied from another slot"]


def test_the_other_slots_prefix_is_copied_and_answers_as_fresh(sharing):
    with sharing.client() as c:
        n_sys = n_tokens(c, SYSTEM)
        run(c, SYSTEM + "Why does it rain?", 0)
        seen = len(copies(sharing))
        got = run(c, SYSTEM + "What is a cloud made of?", 1)
        fresh = run(c, SYSTEM + "What is a cloud made of?", 1, cache_prompt=False)
    assert got["timings"]["cache_n"] >= n_sys - 1  # the system prompt (its last token may merge with the question)
    assert got["timings"]["cache_n"] + got["timings"]["prompt_n"] == fresh["timings"]["prompt_n"]
    assert got["tokens"] == fresh["tokens"]
    ev = copies(sharing)[seen:]
    assert [(e["slot"], e["src_slot"], e["n_tokens"]) for e in ev] == [(1, 0, got["timings"]["cache_n"])]


def test_a_busy_donor_gives_its_prefix_and_its_own_answer_is_unchanged(sharing):
    question = SYSTEM + "How do rivers form?"
    with sharing.client() as c:
        n_sys = n_tokens(c, SYSTEM)
        alone = run(c, question, 0, n_predict=48, cache_prompt=False, ignore_eos=True)
        run(c, "Something unrelated to clear slot 1.", 1, n_predict=1)
        seen = len(copies(sharing))
        started, result = threading.Event(), {}

        def donor():
            with c.stream("POST", "/completion", json={"prompt": question, "id_slot": 0, "n_predict": 48,
                                                       "temperature": 0, "stream": True, "cache_prompt": False,
                                                       "ignore_eos": True, "return_tokens": True}) as r:
                toks = []
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        started.set()
                        toks += json.loads(line[6:]).get("tokens", [])
                result["tokens"] = toks

        t = threading.Thread(target=donor)
        t.start()
        assert started.wait(60)
        other = run(c, SYSTEM + "How do rivers end?", 1)
        t.join(120)
    assert len(alone["tokens"]) == 48 and result["tokens"] == alone["tokens"]
    assert other["timings"]["cache_n"] >= n_sys - 1
    assert [(e["slot"], e["src_slot"]) for e in copies(sharing)[seen:]] == [(1, 0)]


def test_nothing_shared_nothing_copied(sharing):
    with sharing.client() as c:
        run(c, SYSTEM + "Why is the sky blue?", 0)
        seen = len(copies(sharing))
        got = run(c, "Tell me about volcanoes and how they erupt.", 1)
    assert got["timings"]["cache_n"] == 0 and copies(sharing)[seen:] == []
