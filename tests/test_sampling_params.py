"""llama-server's sampling parameters (service/sampling/params.py): defaults, the `samplers`
spec, validation that names the field, and decoding from a request's JSON."""

import math

import msgspec
import pytest

from service.sampling import DEFAULT_SAMPLER_SEQ, DEFAULT_SAMPLERS, LLAMA_DEFAULT_SEED, SamplingParams
from service.sampling import parse_samplers, samplers_to_letters


def test_defaults_match_llama_server():
    p = SamplingParams()
    assert p.seed == LLAMA_DEFAULT_SEED == 0xFFFFFFFF
    assert (p.n_probs, p.min_keep, p.top_k) == (0, 0, 40)
    assert (p.top_p, p.min_p, p.typical_p) == (0.95, 0.05, 1.0)
    assert (p.xtc_probability, p.xtc_threshold) == (0.0, 0.1)
    assert (p.temperature, p.dynatemp_range, p.dynatemp_exponent) == (0.8, 0.0, 1.0)
    assert (p.repeat_last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty) == (64, 1.0, 0.0, 0.0)
    assert (p.dry_multiplier, p.dry_base, p.dry_allowed_length, p.dry_penalty_last_n) == (0.0, 1.75, 2, 64)
    assert p.dry_sequence_breakers == ("\n", ":", '"', "*")
    assert (p.mirostat, p.mirostat_tau, p.mirostat_eta) == (0, 5.0, 0.1)
    assert p.top_n_sigma == -1.0
    assert p.ignore_eos is False and p.logit_bias == ()
    assert p.samplers == DEFAULT_SAMPLERS
    assert ";".join(DEFAULT_SAMPLERS) == "penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature"
    assert samplers_to_letters(DEFAULT_SAMPLERS) == DEFAULT_SAMPLER_SEQ == "edskypmxt"


def test_parse_samplers():
    assert parse_samplers("edskypmxt") == DEFAULT_SAMPLERS
    assert parse_samplers(";".join(DEFAULT_SAMPLERS)) == DEFAULT_SAMPLERS
    assert parse_samplers(["top_k", "temperature"]) == ("top_k", "temperature")
    assert parse_samplers(["top-k", "nucleus", "typical", "temp"]) == ("top_k", "top_p", "typ_p", "temperature")
    assert parse_samplers("kkt") == ("top_k", "top_k", "temperature")
    assert parse_samplers("") == ()
    assert SamplingParams(samplers="kt").samplers == ("top_k", "temperature")
    for bad in (["top_k", "bogus"], "ktz", ["infill"], "a", 3):
        with pytest.raises(ValueError, match="^samplers:"):
            parse_samplers(bad)


@pytest.mark.parametrize(
    "field, value",
    [
        ("top_p", 1.5), ("top_p", -0.1), ("min_p", 2.0), ("typical_p", -1.0), ("top_k", -2),
        ("xtc_probability", 1.1), ("xtc_threshold", -0.5), ("temperature", math.nan),
        ("dynatemp_range", -1.0), ("repeat_last_n", -2), ("repeat_penalty", 0.0),
        ("dry_penalty_last_n", -5), ("dry_allowed_length", -1), ("dry_multiplier", -1.0),
        ("mirostat", 3), ("mirostat_eta", -0.1), ("seed", -2), ("seed", 2**32), ("n_probs", -1),
        ("min_keep", -1), ("top_k", 1.5), ("samplers", ["nope"]), ("logit_bias", ((-1, 1.0),)),
        ("logit_bias", ((1, math.nan),)), ("frequency_penalty", math.inf),
    ],
)
def test_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        SamplingParams(**{field: value})


def test_accepted_edge_values():
    p = SamplingParams(seed=-1, top_k=-1, top_p=0.0, dry_base=0.5, temperature=-1.0, logit_bias=((3, -math.inf),))
    assert p.seed == LLAMA_DEFAULT_SEED and p.seed_is_random
    assert p.dry_base == 1.75  # llama-server resets dry_base < 1 to its default
    assert SamplingParams(top_k=0).top_k == 0


def test_decode_from_request_json():
    body = b'{"temperature": 0.5, "top_k": 10, "samplers": "kt", "typical_p": 1, "prompt": "hi", "seed": -1}'
    p = msgspec.json.decode(body, type=SamplingParams)
    assert (p.temperature, p.top_k, p.samplers, p.seed) == (0.5, 10, ("top_k", "temperature"), LLAMA_DEFAULT_SEED)
    with pytest.raises(ValueError, match="top_p"):
        msgspec.json.decode(b'{"top_p": 3}', type=SamplingParams)

