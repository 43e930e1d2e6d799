"""How slots use their KV caches, on real servers: the unified pool (-kvu), the RAM prompt cache
and idle-slot caching (--cache-ram, --cache-idle-slots, with llama-server's test tags in the -v
log), slot choice by similarity (-sps), --no-cache-prompt and batching without -cb."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.served import module_server

LONG = ("Once upon a time in a land far away, there lived a brave knight who traveled across mountains and rivers "
        "to find the legendary golden sword hidden deep within the enchanted forest of whispers.")
SHORT = "The quick brown fox"

unified = module_server("unified", "-c", "512", "-np", "2", "-kvu", "--cache-ram", "100", "-v")
lru = module_server("lru", "-c", "512", "-np", "2", "-sps", "0", "--cache-ram", "0", "--no-cache-prompt", "-nocb",
                    "-v")


def complete(server, **body) -> dict:
    r = httpx.post(server.url + "/completion", json={"n_predict": 4, "temperature": 0, **body}, timeout=120)
    return {"status": r.status_code, **r.json()}


def test_idle_slots_go_to_the_ram_cache_and_come_back(unified):
    log = unified.output
    assert "__TEST_TAG_CACHE_IDLE_SLOTS_ENABLED__" in log()
    first = complete(unified, prompt=LONG, id_slot=0)
    assert "__TEST_TAG_CACHE_IDLE_SLOT__" not in log()  # the other slot held nothing
    complete(unified, prompt=SHORT, id_slot=1)
    assert log().count("__TEST_TAG_CACHE_IDLE_SLOT__") == 1  # slot 0 saved, and freed: the pool is shared
    held = [s.get("n_prompt_tokens") for s in httpx.get(unified.url + "/slots").json()]
    assert held[0] == 0 and held[1] > 0
    n_log = len(log())
    again = complete(unified, prompt=LONG)  # slot 0 by LRU: loaded back from the RAM cache
    assert "updating prompt cache" in log()[n_log:]
    assert again["timings"]["cache_n"] == first["timings"]["prompt_n"] - 1 and again["content"] == first["content"]


def test_a_unified_pool_gives_each_slot_all_of_it_and_fails_when_they_outgrow_it(unified):
    assert [s["n_ctx"] for s in httpx.get(unified.url + "/slots").json()] == [512, 512]
    alone = complete(unified, prompt=LONG * 4, n_predict=120, ignore_eos=True)  # > 256: fits one slot of the pool
    assert alone["status"] == 200 and alone["timings"]["predicted_n"] == 120
    out: list[dict] = []
    body = {"prompt": LONG * 4, "n_predict": 120, "ignore_eos": True}  # 2 x ~280 tokens > 512
    threads = [threading.Thread(target=lambda i=i: out.append(complete(unified, id_slot=i, **body))) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert any(r["status"] == 500 and r["error"]["message"] == "Context size has been exceeded." for r in out), out
    assert complete(unified, prompt=SHORT)["status"] == 200  # the pool was freed


def test_without_a_ram_cache_idle_slots_are_not_cached(lru):
    log = lru.output()
    assert "__TEST_TAG_CACHE_IDLE_SLOTS_ENABLED__" not in log and "--cache-idle-slots requires --cache-ram" in log
    assert [s["n_ctx"] for s in httpx.get(lru.url + "/slots").json()] == [256, 256]  # -np 2 without -kvu


def test_no_cache_prompt_is_the_default_a_request_can_override(lru):
    complete(lru, prompt=LONG, id_slot=0)
    assert complete(lru, prompt=LONG, id_slot=0)["timings"]["cache_n"] == 0
    assert complete(lru, prompt=LONG, id_slot=0, cache_prompt=True)["timings"]["cache_n"] > 0


def test_without_similarity_the_least_recently_used_slot_is_taken(lru):
    a = complete(lru, prompt=LONG, cache_prompt=True)
    b = complete(lru, prompt=SHORT, cache_prompt=True)
    assert a["id_slot"] != b["id_slot"]
    c = complete(lru, prompt=SHORT, cache_prompt=True)  # -sps 0: not the slot holding SHORT, the older one
    # which copies SHORT's keys and values from the other slot (CacheKeeper.share_prefix; llama-server
    # evaluates them again), all but the last token, whose logits are needed
    assert c["id_slot"] == a["id_slot"] and c["timings"]["cache_n"] == b["timings"]["prompt_n"] - 1


def test_without_continuous_batching_a_prompt_waits_for_running_generations(lru):
    ends: dict[str, float] = {}

    def run(name, **body):
        complete(lru, **body)
        ends[name] = time.monotonic()

    long = threading.Thread(target=run, args=("long",), kwargs={"prompt": LONG, "n_predict": 60, "ignore_eos": True})
    long.start()
    time.sleep(0.5)  # the long one is generating
    run("short", prompt=SHORT, n_predict=1)
    long.join(120)
    assert ends["short"] >= ends["long"]
