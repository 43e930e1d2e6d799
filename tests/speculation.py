"""What the speculative-decoding server tests share: the request that turns speculation off, a greedy
/completion of a module's prompt, the module fixture that asks it without and with drafts, the
llama-server counters /metrics reports, and the copy task (a code snippet to rewrite as it is, which
the model copies from its prompt: n-gram drafts get accepted), also used by benchmarks/bench_speculative.py."""

from __future__ import annotations

import re

OFF = {"speculative.n_max": 0}  # a request's own switch: decode without drafts

SNIPPET = """for i in range(10):
    print(i)
for j in range(20):
    print(j)
for k in range(30):
    print(k)
total = 0
for n in range(40):
    total += n
print(total)
"""


def rewrite_prompt(snippet: str) -> str:
    """SmolLM2's chat prompt asking to rewrite snippet exactly as it is."""
    return ("<|im_start|>user\nRewrite this code exactly as it is:\n\n```python\n" + snippet
            + "```<|im_end|>\n<|im_start|>assistant\n")


def completer(prompt: str, n: int):
    """complete(client, **fields): a greedy /completion of prompt (n tokens, the prompt cache off unless
    fields say otherwise), asserted 200, as JSON."""

    def complete(c, **kw) -> dict:
        body = {"prompt": prompt, "n_predict": n, "temperature": 0, "cache_prompt": False, **kw}
        r = c.post("/completion", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    return complete


def answers_fixture(complete):
    """A module fixture `answers` on the module's `server`: (without drafts, with drafts), the same
    greedy request."""
    import pytest  # here: benchmarks/bench_speculative.py takes the prompt without it

    @pytest.fixture(scope="module", name="answers")
    def answers(server) -> tuple[dict, dict]:
        with server.client() as c:
            return complete(c, **OFF), complete(c)

    return answers


def spec_metrics(text: str) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """From a /metrics text: the llamacpp:spec_decode_*_total counters, and the accepted tokens per
    position as (position, count) strings."""
    n = {k: float(v) for k, v in re.findall(r"^llamacpp:(spec_decode_\w+_total) (\S+)$", text, re.MULTILINE)}
    per_pos = re.findall(r'^llamacpp:spec_decode_num_accepted_tokens_per_pos_total\{position="(\d+)"\} (\d+)$',
                         text, re.MULTILINE)
    return n, per_pos
