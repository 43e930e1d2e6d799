"""The Sampler with a grammar constraint, on tests/test_grammar.py's tiny vocabulary: draws stay inside the grammar.

Both ways of applying the mask are driven: few allowed tokens (gathered into a sparse
candidate set) and many (masked in place), under the default chain, greedy, Mirostat and
penalties/DRY; the finished grammar's end-of-generation token; logit_bias against the mask.
"""

import math
import re

import numpy as np
import pytest

from service.sampling import Sampler, SamplingParams
from tests.test_grammar import EOS, SCHEMA, YES_NO, _allowed, _yes_no_complete, compiler, tok  # noqa: F401 (fixtures)


def _run(sampler, c, logits_fn, n=60):
    ids = []
    for i in range(n):
        t = sampler.sample(logits_fn(i))
        sampler.accept(t)
        if t == EOS:
            return ids, True
        ids.append(t)
    return ids, False


@pytest.mark.parametrize("params", [
    SamplingParams(seed=3),
    SamplingParams(seed=4, temperature=0.0),
    SamplingParams(seed=5, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.3, dry_multiplier=0.8),
    SamplingParams(seed=6, mirostat=2, n_probs=3),
    SamplingParams(seed=7, mirostat=1),
])
def test_sampler_stays_in_the_grammar(tok, compiler, params):
    n = tok.n_vocab
    rng = np.random.default_rng(params.seed)
    x = rng.standard_normal((60, n)).astype(np.float32) * 3
    x[:, tok.token_id("x")] = 50.0  # the model's favourite is never allowed
    c = compiler.compile(grammar=YES_NO)
    s = Sampler(params, n, eog_ids=tok.eog_ids, constraint=c)
    ids, ended = _run(s, c, lambda i: x[i])
    assert ended and _yes_no_complete(tok.detokenize(ids))
    assert c.masks_computed == len(ids) + 1  # once per step
    if params.n_probs:
        lp = s.last_probs
        assert set(lp.top_ids.tolist()) <= {EOS}  # the last step allowed only EOS here, or EOS was drawn


def test_finished_grammar_yields_eos_even_with_ignore_eos(tok, compiler):
    n = tok.n_vocab
    x = np.zeros(n, np.float32)
    x[tok.token_id("a")] = 30.0
    c = compiler.compile(grammar='root ::= "yes"')
    s = Sampler(SamplingParams(seed=1, ignore_eos=True), n, eog_ids=tok.eog_ids, constraint=c)
    assert s.sample(x) == tok.token_id("yes")
    s.accept(tok.token_id("yes"))
    assert c.is_finished and c.is_accepting
    assert s.sample(x) == EOS


def test_mask_beats_logit_bias(tok, compiler):
    n = tok.n_vocab
    ban = tuple((t, -math.inf) for t in range(n) if t != tok.token_id("x"))
    c = compiler.compile(grammar='root ::= "no"')
    s = Sampler(SamplingParams(seed=1, logit_bias=ban), n, eog_ids=tok.eog_ids, constraint=c)
    t = s.sample(np.zeros(n, np.float32))
    assert tok.token_to_piece(t) in (b"n", b"no")


def test_prompt_tokens_do_not_advance_the_grammar(tok, compiler):
    c = compiler.compile(grammar=YES_NO)
    s = Sampler(SamplingParams(seed=1, repeat_penalty=1.2), tok.n_vocab, constraint=c)
    s.accept_many(tok.tokenize("maybe,x", add_special=False))
    assert s.history.size == 7 and c.masks_computed == 0 and c.allows(tok.token_id("yes"))


def test_seeded_constrained_draws_repeat_and_reset(tok, compiler):
    n = tok.n_vocab
    x = np.random.default_rng(9).standard_normal((60, n)).astype(np.float32)
    s = Sampler(SamplingParams(seed=11, temperature=2.0, top_k=0, top_p=1.0, min_p=0.0), n,
                eog_ids=tok.eog_ids, constraint=compiler.compile(json_schema=SCHEMA))
    a = _run(s, None, lambda i: x[i])
    s.reset()
    b = _run(s, None, lambda i: x[i])
    s2 = Sampler(SamplingParams(seed=11, temperature=2.0, top_k=0, top_p=1.0, min_p=0.0), n,
                 eog_ids=tok.eog_ids, constraint=compiler.compile(json_schema=SCHEMA))
    assert a == b == _run(s2, None, lambda i: x[i])


def test_constraint_vocabulary_must_match(compiler):
    with pytest.raises(ValueError, match="constraint"):
        Sampler(SamplingParams(), 200, constraint=compiler.compile(grammar=YES_NO))


def test_dense_mask_path_stays_in_the_grammar(tok, compiler):
    # many allowed tokens (a quarter of the vocabulary or more): masked in place, not gathered
    n = tok.n_vocab
    grammar = "root ::= [a-z ]{1,12}"
    c = compiler.compile(grammar=grammar)
    assert 4 * len(_allowed(c, n)) >= n
    x = np.random.default_rng(2).standard_normal((40, n)).astype(np.float32) * 2
    x[:, tok.token_id("X")] = 40.0
    for params in (SamplingParams(seed=1), SamplingParams(seed=2, temperature=0.0), SamplingParams(seed=3, top_n_sigma=1.0, dynatemp_range=0.5)):
        c = compiler.compile(grammar=grammar)
        ids, ended = _run(Sampler(params, n, eog_ids=tok.eog_ids, constraint=c), c, lambda i: x[i])
        assert ended and re.fullmatch(r"[a-z ]{1,12}", tok.detokenize(ids))


def test_bias_banning_every_allowed_token_still_yields_an_allowed_one(tok, compiler):
    n = tok.n_vocab
    c = compiler.compile(grammar="root ::= [a-z ]{1,12}")
    allowed = _allowed(c, n)
    ban = tuple((t, -math.inf) for t in allowed)
    x = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    s = Sampler(SamplingParams(seed=1, logit_bias=ban), n, eog_ids=tok.eog_ids, constraint=c)
    t = s.sample(x)
    assert t in allowed and t == max(allowed, key=lambda u: x[u])
    s.accept(t)
