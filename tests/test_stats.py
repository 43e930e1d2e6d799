"""The `llamacpp:` counters: throughput buckets emptied by each scrape, generation steps that leave
out the first token, and the copy a sleeping server answers from."""

from __future__ import annotations

from service.engine.stats import Stats


def test_a_scrape_reads_and_empties_the_bucket():
    s = Stats(t_start=100)
    s.decoded(n_busy=1, n_tokens_max=8, n_prompt=8, seconds=0.5)
    s.decoded(n_busy=2, n_tokens_max=9, n_prompt=0, seconds=0.1)  # a decode-only pass: no prompt time
    s.cached(3)
    s.generated(5, 0.4)  # 5 tokens, 4 steps
    m = s.scrape()
    assert (m.prompt.count, m.prompt.seconds, m.n_prompt_cached, m.n_tokens_max) == (8, 0.5, 3, 9)
    assert m.prompt_bucket.per_second() == 16 and m.predict_bucket.per_second() == 10
    assert (m.predict.count, m.n_decode, m.busy_slots_per_decode) == (5, 2, 1.5)
    again = s.scrape()
    assert again.prompt_bucket.per_second() == 0 and again.predict_bucket.per_second() == 0
    assert again.predict.count == 5 and s.t_start == 100


def test_one_token_is_no_step():
    s = Stats()
    s.generated(1, 0.001)
    assert s.scrape().predict_bucket.per_second() == 0


def test_asleep_scrapes_read_the_frozen_copy_and_a_wake_does_not_report_it_again():
    s = Stats()
    s.generated(9, 0.8)
    s.freeze()
    s.generated(1, 1.0)  # nothing runs asleep; were it to, the frozen copy would not show it
    assert s.scrape().predict_bucket.per_second() == 10
    assert s.scrape().predict_bucket.per_second() == 0
    s.thaw()
    assert s.scrape().predict_bucket.per_second() == 0  # reported while asleep already
    s.generated(3, 1.0)
    s.freeze()
    s.thaw()  # no scrape while asleep: the bucket is still to be reported
    assert s.scrape().predict_bucket.per_second() == 2
