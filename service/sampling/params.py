"""llama-server's sampling parameters: names, defaults, validation, and the `samplers` chain.

Field names are the JSON names of llama-server's completion requests (`temperature`,
`typical_p`, `repeat_last_n`, ...); defaults are llama.cpp's `common_params_sampling`
(common/common.h). A request's JSON object decodes straight into `SamplingParams` with
msgspec (unknown fields are ignored); out-of-range values raise ValueError (msgspec wraps it
in ValidationError, itself a ValueError) whose message starts with the field's name.

Two fields need the tokenizer and are resolved by the caller, not here:
- `logit_bias`: llama-server accepts [[token, bias], ...], [["text", bias], ...] or
  {"token-or-text": bias}, with `false` meaning "never". `resolve_logit_bias` (bias.py)
  turns any of these into ((token_id, bias), ...), which is what this field holds.
- `dry_sequence_breakers`: kept here as strings (they are reported back in
  generation_settings); the Sampler takes them as token-id sequences, see
  `service.sampling.dry_breaker_sequences`. An empty tuple means no breakers (llama.cpp's
  CLI "none"); llama-server rejects an explicitly empty list in a request, which is the
  HTTP layer's check to make.
`ignore_eos` is applied by the Sampler from the end-of-generation ids its caller gives it.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # "pick a random seed"; a request's -1 means the same

# Canonical names, in llama.cpp's order of the enum, with their one-letter codes.
SAMPLER_LETTERS: dict[str, str] = {
    "d": "dry",
    "k": "top_k",
    "y": "typ_p",
    "p": "top_p",
    "s": "top_n_sigma",
    "m": "min_p",
    "t": "temperature",
    "x": "xtc",
    "e": "penalties",
}
SAMPLER_NAMES = frozenset(SAMPLER_LETTERS.values())
# Accepted in ';'-separated lists and name arrays alongside the canonical names (llama.cpp's CLI set).
SAMPLER_ALT_NAMES: dict[str, str] = {
    "top-k": "top_k",
    "top-p": "top_p",
    "top-n-sigma": "top_n_sigma",
    "nucleus": "top_p",
    "typical-p": "typ_p",
    "typical": "typ_p",
    "typ-p": "typ_p",
    "typ": "typ_p",
    "min-p": "min_p",
    "temp": "temperature",
}
# Known to llama.cpp but not provided by this server.
_UNSUPPORTED = {"infill": "infill", "i": "infill", "adaptive_p": "adaptive_p", "adaptive-p": "adaptive_p", "a": "adaptive_p"}

DEFAULT_SAMPLERS: tuple[str, ...] = (
    "penalties",
    "dry",
    "top_n_sigma",
    "top_k",
    "typ_p",
    "top_p",
    "min_p",
    "xtc",
    "temperature",
)
DEFAULT_SAMPLER_SEQ = "edskypmxt"  # llama.cpp's --sampling-seq default: the same chain
DEFAULT_DRY_SEQUENCE_BREAKERS: tuple[str, ...] = ("\n", ":", '"', "*")


def parse_samplers(value: Any) -> tuple[str, ...]:
    """The chain from a list of names, a string of letters ("edskypmxt"), or a ';'-separated string of names.

    llama-server reads a JSON array as names and a JSON string as letters; llama.cpp's
    --samplers option takes names separated by ';'. A string with a ';' is read as names.
    Unknown names or letters raise ValueError (llama.cpp logs and skips them).
    """
    if isinstance(value, str):
        if ";" in value:
            items, letters = [s for s in value.split(";") if s], False
        else:
            items, letters = list(value), True
    elif isinstance(value, (list, tuple)):
        items, letters = list(value), False
    else:
        raise ValueError(f"samplers: expected a list of names or a string of letters, got {value!r}")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"samplers: expected sampler names as strings, got {item!r}")
        name = SAMPLER_LETTERS.get(item) if letters else (
            item if item in SAMPLER_NAMES else SAMPLER_ALT_NAMES.get(item)
        )
        if name is None:
            if item in _UNSUPPORTED:
                raise ValueError(f"samplers: {_UNSUPPORTED[item]!r} is not supported")
            kind = "letter" if letters else "name"
            raise ValueError(f"samplers: unknown sampler {kind} {item!r}")
        out.append(name)
    return tuple(out)


def samplers_to_letters(samplers: tuple[str, ...]) -> str:
    """The chain as llama.cpp's letter sequence."""
    inv = {v: k for k, v in SAMPLER_LETTERS.items()}
    return "".join(inv[s] for s in samplers)


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True):
    """One request's sampling settings, with llama-server's JSON names and defaults."""

    seed: int = LLAMA_DEFAULT_SEED  # -1 or 0xFFFFFFFF: random (the Sampler reports the one it drew)
    n_probs: int = 0  # > 0: report the top n_probs probabilities of each token
    min_keep: int = 0  # top_p/min_p/typical_p/xtc keep at least this many (0: no minimum)
    top_k: int = 40  # <= 0: off (0 and -1 accepted)
    top_p: float = 0.95  # 1.0: off
    min_p: float = 0.05  # 0.0: off
    xtc_probability: float = 0.0  # 0.0: off
    xtc_threshold: float = 0.1  # > 0.5: off
    typical_p: float = 1.0  # 1.0: off
    temperature: float = 0.8  # <= 0: greedy (the most likely token)
    dynatemp_range: float = 0.0  # 0.0: off; else temperature +- range by entropy
    dynatemp_exponent: float = 1.0
    repeat_last_n: int = 64  # 0: off, -1: the context size
    repeat_penalty: float = 1.0  # 1.0: off
    frequency_penalty: float = 0.0  # 0.0: off
    presence_penalty: float = 0.0  # 0.0: off
    dry_multiplier: float = 0.0  # 0.0: off
    dry_base: float = 1.75  # below 1.0: replaced by 1.75, as llama-server does
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = 64  # 0: off, -1: the context size
    dry_sequence_breakers: tuple[str, ...] = DEFAULT_DRY_SEQUENCE_BREAKERS
    mirostat: int = 0  # 0: off, 1: Mirostat, 2: Mirostat 2.0 (replaces the whole chain)
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    top_n_sigma: float = -1.0  # <= 0: off
    ignore_eos: bool = False
    logit_bias: tuple[tuple[int, float], ...] = ()  # resolved (token_id, bias); -inf: banned
    samplers: tuple[str, ...] | str = DEFAULT_SAMPLERS  # normalized to canonical names

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def seed_is_random(self) -> bool:
        return self.seed in (-1, LLAMA_DEFAULT_SEED)


def _check(name: str, value: float, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    too_low = lo is not None and (value < lo or (lo_open and value == lo))
    if too_low or (hi is not None and value > hi):
        if hi is None:
            rule = f"> {lo}" if lo_open else f">= {lo}"
        else:
            rule = f"in {'(' if lo_open else '['}{lo}, {hi}]"
        raise ValueError(f"{name}: must be {rule}, got {value!r}")


def _check_int(name: str, value: int, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    _check(name, value, lo, hi)


def _validate(p: SamplingParams) -> None:
    set_ = msgspec.structs.force_setattr
    _check_int("seed", p.seed, -1, LLAMA_DEFAULT_SEED)
    if p.seed == -1:
        set_(p, "seed", LLAMA_DEFAULT_SEED)  # llama-server stores the seed as uint32
    _check_int("n_probs", p.n_probs, 0)
    _check_int("min_keep", p.min_keep, 0)
    _check_int("top_k", p.top_k, -1)
    _check("top_p", p.top_p, 0.0, 1.0)
    _check("min_p", p.min_p, 0.0, 1.0)
    _check("xtc_probability", p.xtc_probability, 0.0, 1.0)
    _check("xtc_threshold", p.xtc_threshold, 0.0, 1.0)
    _check("typical_p", p.typical_p, 0.0, 1.0)
    _check("temperature", p.temperature)
    _check("dynatemp_range", p.dynatemp_range, 0.0)
    _check("dynatemp_exponent", p.dynatemp_exponent, 0.0)
    _check_int("repeat_last_n", p.repeat_last_n, -1)
    _check("repeat_penalty", p.repeat_penalty, 0.0, lo_open=True)
    _check("frequency_penalty", p.frequency_penalty)
    _check("presence_penalty", p.presence_penalty)
    _check("dry_multiplier", p.dry_multiplier, 0.0)
    _check("dry_base", p.dry_base)
    if p.dry_base < 1.0:
        set_(p, "dry_base", 1.75)
    _check_int("dry_allowed_length", p.dry_allowed_length, 0)
    _check_int("dry_penalty_last_n", p.dry_penalty_last_n, -1)
    breakers = p.dry_sequence_breakers
    if isinstance(breakers, str) or not all(isinstance(b, str) for b in breakers):
        raise ValueError(f"dry_sequence_breakers: expected a list of strings, got {breakers!r}")
    set_(p, "dry_sequence_breakers", tuple(breakers))
    _check_int("mirostat", p.mirostat, 0, 2)
    _check("mirostat_tau", p.mirostat_tau, 0.0)
    _check("mirostat_eta", p.mirostat_eta, 0.0)
    _check("top_n_sigma", p.top_n_sigma)
    if not isinstance(p.ignore_eos, bool):
        raise ValueError(f"ignore_eos: expected a boolean, got {p.ignore_eos!r}")
    bias = []
    for item in p.logit_bias:
        try:
            tok, b = item
        except (TypeError, ValueError):
            raise ValueError(f"logit_bias: expected (token_id, bias) pairs, got {item!r}") from None
        if isinstance(tok, bool) or not isinstance(tok, int) or tok < 0:
            raise ValueError(f"logit_bias: token ids must be integers >= 0, got {tok!r}")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or math.isnan(b) or b == math.inf:
            raise ValueError(f"logit_bias: bias must be a number or -inf, got {b!r}")
        bias.append((tok, float(b)))
    set_(p, "logit_bias", tuple(bias))
    set_(p, "samplers", parse_samplers(p.samplers))
