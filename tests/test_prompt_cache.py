"""The RAM prompt cache (--cache-ram): what is saved, what is loaded, what is evicted, as
llama-server's server_prompt_cache decides."""

from __future__ import annotations

import numpy as np

from service.engine.prompt_cache import PromptCache

MIB = 1024 * 1024


def kv(n: int, per_token: int = 1024):
    """Fake keys and values of n tokens, per_token bytes in all (half each)."""
    a = np.zeros((1, 1, n, per_token // 8), np.float32)
    return lambda: (a, a.copy())


def test_save_skips_empty_and_contained_prompts_and_drops_contained_entries():
    c = PromptCache(-1, 0)
    assert not c.save([], 0, kv(0))
    assert c.save([1, 2, 3], 3 * 1024, kv(3))
    assert not c.save([1, 2], 2 * 1024, kv(2))  # already held by [1, 2, 3]
    assert c.save([1, 2, 3, 4], 4 * 1024, kv(4))  # holds [1, 2, 3], which goes
    assert [e.tokens for e in c.entries] == [[1, 2, 3, 4]]


def test_the_oldest_entries_go_to_stay_under_the_size_limit():
    c = PromptCache(1, 0)  # 1 MiB
    per = 1024
    assert c.save(list(range(0, 400)), 400 * per, kv(400, per))
    assert c.save(list(range(1000, 1400)), 400 * per, kv(400, per))
    assert c.save(list(range(2000, 2400)), 400 * per, kv(400, per))  # 1.2 MB: the first goes
    assert [e.tokens[0] for e in c.entries] == [1000, 2000] and c.nbytes <= MIB
    assert not c.save(list(range(5000, 7000)), 2000 * per, kv(2000, per))  # larger than the whole cache


def test_take_finds_the_entry_that_beats_the_slot_on_both_counts():
    c = PromptCache(-1, 0)
    c.save([1, 2, 3, 4, 5, 6, 7, 8], 8, kv(8))
    c.save([9, 9, 9, 9], 4, kv(4))
    assert c.take([], [5, 5]) is None  # nothing shared
    e = c.take([], [1, 2, 3, 4, 5, 6, 7, 8, 20])  # an empty slot takes any entry that shares something
    assert e.tokens == [1, 2, 3, 4, 5, 6, 7, 8] and len(c.entries) == 1  # a loaded entry leaves the cache
    c.save([1, 2, 3, 4, 5, 6, 7, 8], 8, kv(8))
    # the slot would keep 6 of its 8 tokens and cover 6/8 of the prompt; the entry 7 of 8 and 7/8
    assert c.take([1, 2, 3, 4, 5, 6, 50, 51], [1, 2, 3, 4, 5, 6, 7, 30]) is not None
    c.save([1, 2, 3, 4, 5, 6, 7, 8], 8, kv(8))
    assert c.take([1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 30]) is None  # the slot keeps all it holds
    assert c.take([], [1, 40]) is None  # 1 of the entry's 8 tokens: under a quarter, a large prompt is kept


def test_trim_keeps_the_token_limit():
    c = PromptCache(0, 10)  # no size limit, 10 tokens
    c.save(list(range(6)), 6, kv(6))
    c.save(list(range(10, 16)), 6, kv(6))
    c.trim()
    assert [e.tokens[0] for e in c.entries] == [10]


def test_take_among_entries_of_the_same_prompt_under_other_adapters():
    """Same tokens, other LoRA scales: both are kept, and taking the second never compares the
    first's arrays (Entry equality is identity)."""
    c = PromptCache(-1, 0)
    assert c.save([1, 2, 3, 4], 4, kv(4), lora=(1.0,))
    assert c.save([1, 2, 3, 4], 4, kv(4), lora=(0.5,))
    e = c.take([], [1, 2, 3, 4, 5], lora=(0.5,))
    assert e is not None and e.lora == (0.5,) and [x.lora for x in c.entries] == [(1.0,)]
