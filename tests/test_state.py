"""ServerState's reading of the engine flags: slot contexts with and without a unified pool, the
engine's config, and -t/-tb within Numba's thread pool."""

from __future__ import annotations

import numba

from service.api.state import ServerState
from service.args import parse_args


def state(*argv: str) -> ServerState:
    return ServerState(parse_args(["-m", "m.gguf", *argv], {}))


def test_unified_kv_gives_every_slot_the_whole_pool():
    assert state("-c", "512", "-np", "2").slot_ctx() == 256
    assert state("-c", "512", "-np", "2", "-kvu").slot_ctx() == 512
    assert state("-c", "512").slot_ctx() == 512  # auto -np: 4 slots sharing the pool, as llama-server
    assert state("-c", "512", "-no-kvu").slot_ctx() == 128
    assert state("-c", "512", "-np", "2", "-kvu").engine_config(512).pool == 512
    assert state("-c", "512", "-np", "2").engine_config(256).pool == 0


def test_engine_config_carries_the_flags():
    c = state("--context-shift", "-nocb", "-sps", "0.5", "--cache-ram", "64", "--no-cache-idle-slots",
              "--sleep-idle-seconds", "9", "-n", "7").engine_config(256)
    assert (c.ctx_shift, c.cont_batching, c.similarity, c.cache_ram_mib, c.cache_idle_slots) == (True, False, 0.5, 64,
                                                                                                  False)
    assert (c.sleep_idle_seconds, c.n_predict_default, c.n_slots, c.threads_batch) == (9, 7, 4, 0)


def test_threads_stay_within_numbas_pool():
    pool = numba.config.NUMBA_NUM_THREADS
    c = state("-t", "1", "-tb", str(pool + 5)).engine_config(256)
    assert (c.threads, c.threads_batch) == (1, pool)
    c = state("-tb", "1").engine_config(256)
    assert (c.threads, c.threads_batch) == (pool, 1)
