"""Value converters for llama-server's flags: one string in (from argv or the environment), the
ServerArgs value out, or ValueError with a message that the parser prefixes with the flag or
variable name. The checks are llama.cpp's (common/arg.cpp); where llama.cpp silently keeps a
broken value (an unknown sampler letter, a negative window) we refuse it instead, so that a typo
in a compose file stops the server rather than changing its output.

Nothing here imports the sampling package (Numba kernels, ~1 s): --help and `python -m
service.args` stay fast; the two sampler-chain converters import it when they are used.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from typing import Callable

TRUTHY = frozenset({"1", "true", "on", "enabled"})  # llama.cpp's is_truthy
FALSY = frozenset({"0", "false", "off", "disabled"})  # llama.cpp's is_falsey
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
_MAX_CPUS = 512  # ggml's GGML_MAX_N_THREADS: the largest CPU index a mask or range may name


def parse_bool(s: str) -> bool:
    v = s.strip().lower()
    if v in TRUTHY:
        return True
    if v in FALSY:
        return False
    raise ValueError(f"invalid boolean {s!r} (use one of: {', '.join(sorted(TRUTHY | FALSY))})")


def int_in(lo: int | None = None, hi: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    def conv(s: str) -> int:
        try:
            v = int(s.strip(), 10)
        except ValueError:
            raise ValueError(f"invalid value {s!r}: expected {what}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError(f"invalid value {s!r}: expected {what}")
        return v
    return conv


def float_in(lo: float | None = None, hi: float | None = None, clamp_lo: bool = False,
             lo_open: bool = False) -> Callable[[str], float]:
    """A finite float within [lo, hi] ((lo, hi] with lo_open); with clamp_lo, values below lo
    become lo (llama.cpp's --temp)."""
    def conv(s: str) -> float:
        try:
            v = float(s.strip())
        except ValueError:
            raise ValueError(f"invalid value {s!r}: expected a number") from None
        if not math.isfinite(v):
            raise ValueError(f"invalid value {s!r}: expected a finite number")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            if clamp_lo:
                return lo
            raise ValueError(f"invalid value {s!r}: expected a number {'>' if lo_open else '>='} {lo}")
        if hi is not None and v > hi:
            raise ValueError(f"invalid value {s!r}: expected a number <= {hi}")
        return v
    return conv


def choice(*options: str) -> Callable[[str], str]:
    def conv(s: str) -> str:
        if s not in options:
            raise ValueError(f"invalid choice {s!r} (choose from {', '.join(options)})")
        return s
    return conv


def text(s: str) -> str:
    return s


def gpu_layers(s: str) -> str:
    """-ngl: a layer count, 'auto' or 'all'; llama.cpp reads -1 as auto and <= -2 as all."""
    v = s.strip()
    if v in ("auto", "all"):
        return v
    n = int_in(what="an integer, 'auto' or 'all'")(v)
    return "auto" if n == -1 else "all" if n < -1 else str(n)


def devices(s: str) -> str:
    """-dev: 'none' or comma-separated device names as llama.cpp prints them (CUDA0, CUDA1, ...)."""
    names = [x.strip() for x in s.split(",") if x.strip()]
    if not names:
        raise ValueError(f"invalid value {s!r}: expected 'none' or device names such as CUDA0")
    for n in names:
        if n != "none" and not re.fullmatch(r"CUDA\d+", n):
            raise ValueError(f"unknown device {n!r} (expected 'none' or CUDA<n>; --list-devices shows them)")
    return ",".join(names)


def parallel(s: str) -> int:
    """-np: 0 is refused as llama-server does; any negative count means auto (-1)."""
    n = int_in(what="a non-zero integer (-1 = auto)")(s)
    if n == 0:
        raise ValueError(f"invalid value {s!r}: expected a non-zero integer (-1 = auto)")
    return max(n, -1)


def tri_state(s: str) -> str:
    """-fa, --log-colors, -rea: on, off or auto in llama.cpp's spellings (1/true/enabled, -1)."""
    v = s.strip().lower()
    if v in TRUTHY:
        return "on"
    if v in FALSY:
        return "off"
    if v in ("auto", "-1"):
        return "auto"
    raise ValueError(f"invalid value {s!r}: expected on, off or auto")


def on_off(s: str) -> str:
    """-fit: on or off (no auto)."""
    return "on" if parse_bool(s) else "off"


def csv_keys(s: str) -> tuple[str, ...]:
    """--api-key, --tools: a comma-separated list (quoted fields may hold commas); empty entries dropped."""
    row = next(csv.reader([s]), [])
    return tuple(k.strip() for k in row if k.strip())


def name_set(s: str) -> tuple[str, ...]:
    """--alias, --tags: comma-separated, stripped, empty ones dropped, each name once."""
    return tuple(dict.fromkeys(x.strip() for x in s.split(",") if x.strip()))


def keys_from_file(path: str) -> tuple[str, ...]:
    """--api-key-file: one key per line; blank lines and '#' comment lines skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except OSError as e:
        raise ValueError(f"cannot read API key file {path!r}: {e.strerror}") from None
    return tuple(ln for ln in lines if ln and not ln.startswith("#"))


def json_object(s: str) -> dict:
    try:
        v = json.loads(s)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at position {e.pos})") from None
    if not isinstance(v, dict):
        raise ValueError("expected a JSON object, e.g. '{\"type\": \"object\"}'")
    return v


def existing_dir(s: str) -> str:
    if not os.path.isdir(s):
        raise ValueError(f"not a directory: {s!r}")
    return s


def readable_file(s: str) -> str:
    if not os.path.isfile(s) or not os.access(s, os.R_OK):
        raise ValueError(f"cannot read file {s!r}")
    return s


def file_text(path: str) -> str:
    """--grammar-file: the file's text, read now (llama.cpp reads it while parsing)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read file {path!r}: {getattr(e, 'strerror', None) or e}") from None


def json_schema_file(path: str) -> dict:
    """-jf: a file holding a JSON schema."""
    return json_object(file_text(path))


def repeat_penalty(s: str) -> float:
    """--repeat-penalty: finite and > 0, and 1/x finite too (llama.cpp divides by it)."""
    v = float_in(0.0, lo_open=True)(s)
    if not math.isfinite(1.0 / v):
        raise ValueError(f"invalid value {s!r}: too small to divide by")
    return v


def dry_base(s: str) -> float:
    """--dry-base: llama.cpp ignores values below 1.0, which leaves the default 1.75."""
    v = float_in()(s)
    return v if v >= 1.0 else 1.75


def dry_breaker(s: str) -> tuple[str, ...] | None:
    """--dry-sequence-breaker: one breaker; 'none' (None here) clears the list."""
    return None if s == "none" else (s,)


def logit_bias(s: str) -> tuple[tuple[int, float], ...]:
    """-l TOKEN_ID(+/-)BIAS, e.g. 15043+1 or 15043-inf (never)."""
    m = re.fullmatch(r"\s*(\d+)\s*([+-])\s*(\S.*)", s)
    try:
        bias = float(m.group(3)) if m else math.nan
    except ValueError:
        bias = math.nan
    if not m or math.isnan(bias):
        raise ValueError(f"invalid value {s!r}: expected TOKEN_ID+BIAS or TOKEN_ID-BIAS, e.g. 15043+1")
    bias = -bias if m.group(2) == "-" else bias
    if bias == math.inf:
        raise ValueError(f"invalid value {s!r}: the bias must be finite or -inf")
    return ((int(m.group(1)), bias),)


def _alias_no_underscore(name: str) -> str:
    from service.sampling.params import SAMPLER_NAMES

    squashed = {n.replace("_", ""): n for n in SAMPLER_NAMES if "_" in n}  # llama.cpp's "topk", "minp", ...
    return squashed.get(name, name)


def samplers(s: str) -> tuple[str, ...]:
    """--samplers: sampler names separated by ';' (llama.cpp's names and aliases)."""
    from service.sampling import parse_samplers

    names = [_alias_no_underscore(n) for n in s.split(";") if n]
    return parse_samplers(names)


def sampler_letters(s: str) -> tuple[str, ...]:
    """--sampling-seq: one letter per sampler, e.g. edskypmxt."""
    from service.sampling import parse_samplers

    if ";" in s:
        raise ValueError(f"invalid value {s!r}: expected sampler letters such as 'kt' (names go to --samplers)")
    return parse_samplers(s)


def cpu_mask(s: str) -> str:
    """-C: an arbitrarily long hex mask, optional 0x prefix."""
    digits = s[2:] if s.startswith("0x") else s
    if not re.fullmatch(r"[0-9a-fA-F]*", digits):
        raise ValueError(f"invalid CPU mask {s!r}: expected hex digits")
    return s


def cpu_range(s: str) -> str:
    """-Cr: lo-hi, either end may be left out ([lo]-[hi])."""
    m = re.fullmatch(r"(\d*)-(\d*)", s)
    if not m or any(x and int(x) >= _MAX_CPUS for x in m.groups()):
        raise ValueError(f"invalid CPU range {s!r}: expected [lo]-[hi] below {_MAX_CPUS}")
    return s


def float_list(s: str) -> tuple[float, ...]:
    """-ts: proportions separated by ',' or '/'."""
    parts = [p for p in re.split(r"[,/]+", s) if p]
    return tuple(float_in(0.0)(p) for p in parts)


def int_list(s: str) -> tuple[int, ...]:
    """-fitt: non-negative integers separated by ',' or '/'."""
    parts = [p for p in re.split(r"[,/]+", s) if p]
    return tuple(int_in(0, what="a non-negative integer list")(p) for p in parts)


def sleep_seconds(s: str) -> int:
    """--sleep-idle-seconds: -1 (never) or a positive number of seconds."""
    v = int_in(what="-1 or a positive integer")(s)
    if v == 0 or v < -1:
        raise ValueError(f"invalid value {s!r}: expected -1 or a positive integer")
    return v


def process_escapes(s: str) -> str:
    """llama.cpp's string_process_escapes: \\n \\r \\t \\' \\" \\\\ and \\xHH; any other escape stays as written."""
    simple = {"n": "\n", "r": "\r", "t": "\t", "'": "'", '"': '"', "\\": "\\"}

    def one(m: re.Match) -> str:
        g = m.group(1)
        if g in simple:
            return simple[g]
        return chr(int(g[1:], 16)) if len(g) == 3 else m.group(0)
    return re.sub(r"\\(x[0-9a-fA-F]{2}|.)", one, s, flags=re.S)


def one(s: str) -> tuple[str, ...]:
    """A repeatable text flag (-r): each use adds one entry."""
    return (s,)


def numa(s: str) -> str:
    """--numa: llama.cpp reads an empty value as distribute."""
    return choice("distribute", "isolate", "numactl")(s or "distribute")


def lora_files(s: str) -> tuple[tuple[str, float], ...]:
    """--lora FNAME[,FNAME...]: adapters at scale 1."""
    names = csv_keys(s)
    if not names:
        raise ValueError("expected one or more adapter files")
    return tuple((n, 1.0) for n in names)


def lora_scaled(s: str) -> tuple[tuple[str, float], ...]:
    """--lora-scaled FNAME:SCALE[,...]."""
    out = []
    for item in csv_keys(s) or [""]:
        name, sep, scale = item.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            out.append((name, float(scale)))
        except ValueError:
            raise ValueError(f"invalid value {item!r}: expected FNAME:SCALE") from None
    return tuple(out)
