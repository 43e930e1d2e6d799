"""llama-server's sampler chain: parameters (params.py) and the per-sequence Sampler (sampler.py).

The kernels are in kernels/sampling.py and kernels/sampling_filters.py; NumPy references
for each sampler are in tests/oracle_sampling.py.
"""

from service.sampling.params import (
    DEFAULT_DRY_SEQUENCE_BREAKERS,
    DEFAULT_SAMPLER_SEQ,
    DEFAULT_SAMPLERS,
    LLAMA_DEFAULT_SEED,
    SamplingParams,
    parse_samplers,
    samplers_to_letters,
)
from service.sampling.bias import resolve_logit_bias
from service.sampling.candidates import SamplerWorkspace, TokenProbs
from service.sampling.dry import dry_breaker_sequences
from service.sampling.sampler import Sampler

__all__ = [
    "DEFAULT_DRY_SEQUENCE_BREAKERS",
    "DEFAULT_SAMPLERS",
    "DEFAULT_SAMPLER_SEQ",
    "LLAMA_DEFAULT_SEED",
    "Sampler",
    "SamplerWorkspace",
    "SamplingParams",
    "TokenProbs",
    "dry_breaker_sequences",
    "resolve_logit_bias",
    "parse_samplers",
    "samplers_to_letters",
]
