"""llama-server's sampler chain: parameters (params.py), the per-sequence Sampler (sampler.py),
logit_bias resolution (bias.py) and structured output (grammar.py, structured.py).

The kernels are in kernels/sampling.py, sampling_filters.py, sampling_dry.py and
sampling_mask.py (the grammar's mask); NumPy references
for each sampler are in tests/oracles/sampling.py.
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
from service.sampling.grammar import Constraint, GrammarCompiler, GrammarError, fill_masks
from service.sampling.sampler import Sampler
from service.sampling.structured import StructuredOutput, compile_structured

__all__ = [
    "Constraint",
    "GrammarCompiler",
    "GrammarError",
    "DEFAULT_DRY_SEQUENCE_BREAKERS",
    "DEFAULT_SAMPLERS",
    "DEFAULT_SAMPLER_SEQ",
    "LLAMA_DEFAULT_SEED",
    "Sampler",
    "SamplerWorkspace",
    "SamplingParams",
    "TokenProbs",
    "StructuredOutput",
    "compile_structured",
    "dry_breaker_sequences",
    "fill_masks",
    "resolve_logit_bias",
    "parse_samplers",
    "samplers_to_letters",
]
