"""llama-server's command-line flags as a table: one `Flag` row per flag.

Names, short forms, `LLAMA_ARG_*` variables and defaults are llama.cpp's (common/arg.cpp and
common/common.h of current llama-server). Where llama.cpp renamed a variable, the old name is
accepted after the new one (LLAMA_CHAT_TEMPLATE_KWARGS, LLAMA_ARG_WEBUI). Rows marked `ours`
are llamajit's own flags; rows in group COMPAT are parsed and stored but change nothing here.

Each converter turns one string (from argv or from the environment) into the field's value,
or raises ValueError with a message that the parser prefixes with the flag or variable name.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

TRUTHY = frozenset({"1", "true", "on", "enabled"})  # llama.cpp's is_truthy
FALSY = frozenset({"0", "false", "off", "disabled"})  # llama.cpp's is_falsey


class Kind(Enum):
    """How a flag takes its value.

    VALUE:  one argument, converted by `conv` (argv and env alike).
    SWITCH: no argument; present = True. Its env var takes a truthy/falsy spelling.
    TOGGLE: --x / --no-x pair. Env: truthy/falsy; LLAMA_ARG_NO_X truthy forces False.
    APPEND: one argument, may repeat; the converted tuples are concatenated.
    OPTIONAL: an argument that may be left out (then `const` is used), e.g. a bare `-fa`.
    """

    VALUE = "value"
    SWITCH = "switch"
    TOGGLE = "toggle"
    APPEND = "append"
    OPTIONAL = "optional"


GENERAL, SERVER, SAMPLING, OURS, COMPAT = "general", "server", "sampling", "llamajit", "compat"


@dataclass(frozen=True)
class Flag:
    dest: str
    names: tuple[str, ...]
    env: tuple[str, ...]
    kind: Kind
    default: Any
    help: str
    conv: Callable[[str], Any] | None = None
    neg: tuple[str, ...] = ()  # TOGGLE: the names that turn it off
    metavar: str | None = None
    group: str = GENERAL
    const: Any = None  # OPTIONAL: the value of the bare flag

    def neg_env(self) -> tuple[str, ...]:
        """LLAMA_ARG_NO_X for each LLAMA_ARG_X of a toggle (llama.cpp derives them the same way)."""
        if self.kind is not Kind.TOGGLE:
            return ()
        return tuple(e.replace("LLAMA_ARG_", "LLAMA_ARG_NO_", 1) for e in self.env if e.startswith("LLAMA_ARG_"))


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


def float_in(lo: float | None = None, hi: float | None = None, clamp_lo: bool = False) -> Callable[[str], float]:
    """A finite float within [lo, hi]; with clamp_lo, values below lo become lo (llama.cpp's --temp)."""
    def conv(s: str) -> float:
        try:
            v = float(s.strip())
        except ValueError:
            raise ValueError(f"invalid value {s!r}: expected a number") from None
        if not math.isfinite(v):
            raise ValueError(f"invalid value {s!r}: expected a finite number")
        if lo is not None and v < lo:
            if clamp_lo:
                return lo
            raise ValueError(f"invalid value {s!r}: expected a number >= {lo}")
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


def flash_attn(s: str) -> str:
    v = s.strip().lower()
    if v in TRUTHY:
        return "on"
    if v in FALSY:
        return "off"
    if v in ("auto", "-1"):
        return "auto"
    raise ValueError(f"invalid value {s!r}: expected on, off or auto")


def csv_keys(s: str) -> tuple[str, ...]:
    """--api-key: a comma-separated list (quoted fields may hold commas); empty entries dropped."""
    row = next(csv.reader([s]), [])
    return tuple(k.strip() for k in row if k.strip())


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
        raise ValueError("expected a JSON object, e.g. '{\"enable_thinking\": false}'")
    return v


def existing_dir(s: str) -> str:
    if not os.path.isdir(s):
        raise ValueError(f"not a directory: {s!r}")
    return s


def readable_file(s: str) -> str:
    if not os.path.isfile(s) or not os.access(s, os.R_OK):
        raise ValueError(f"cannot read file {s!r}")
    return s


V, S, T, A, O = Kind.VALUE, Kind.SWITCH, Kind.TOGGLE, Kind.APPEND, Kind.OPTIONAL
_UINT = int_in(0, None, "a non-negative integer")

FLAGS: tuple[Flag, ...] = (
    # -- model and context
    Flag("model", ("-m", "--model"), ("LLAMA_ARG_MODEL",), V, None, "model path (GGUF)", text, metavar="FNAME"),
    Flag("alias", ("-a", "--alias"), ("LLAMA_ARG_ALIAS",), V, None, "model name reported by the API (comma-separated aliases)", text, metavar="STRING"),
    Flag("hf_repo", ("-hf", "-hfr", "--hf-repo"), ("LLAMA_ARG_HF_REPO",), V, None, "Hugging Face repository <user>/<model>[:quant]", text, metavar="REPO"),
    Flag("hf_file", ("-hff", "--hf-file"), ("LLAMA_ARG_HF_FILE",), V, None, "file in --hf-repo (overrides its quant)", text, metavar="FILE"),
    Flag("ctx_size", ("-c", "--ctx-size"), ("LLAMA_ARG_CTX_SIZE",), V, 0, "prompt context size, shared by all slots (0 = the model's)", _UINT, metavar="N"),
    Flag("n_predict", ("-n", "--predict", "--n-predict"), ("LLAMA_ARG_N_PREDICT",), V, -1, "tokens to predict per request (-1 = until end or context)", int_in(-1, None, "an integer >= -1"), metavar="N"),
    Flag("parallel", ("-np", "--parallel"), ("LLAMA_ARG_N_PARALLEL",), V, -1, "number of server slots (-1 = auto: 4 slots sharing one context)", parallel, metavar="N"),
    Flag("batch_size", ("-b", "--batch-size"), ("LLAMA_ARG_BATCH",), V, 2048, "logical maximum batch size", int_in(1, None, "a positive integer"), metavar="N"),
    Flag("ubatch_size", ("-ub", "--ubatch-size"), ("LLAMA_ARG_UBATCH",), V, 512, "physical maximum batch size", int_in(1, None, "a positive integer"), metavar="N"),
    Flag("threads", ("-t", "--threads"), ("LLAMA_ARG_THREADS",), V, -1, "CPU threads for generation (<= 0: all cores)", int_in(), metavar="N"),
    Flag("n_gpu_layers", ("-ngl", "--gpu-layers", "--n-gpu-layers"), ("LLAMA_ARG_N_GPU_LAYERS",), V, "auto", "layers to store in VRAM (the first N; 'all' adds the output head; 'auto': all when a CUDA device is present)", gpu_layers, metavar="N"),
    Flag("device", ("-dev", "--device"), ("LLAMA_ARG_DEVICE",), V, None, "devices to offload to: CUDA0, CUDA1, ... (llamajit uses the first) or 'none'", devices, metavar="<dev1,dev2,..>"),
    Flag("list_devices", ("--list-devices",), (), S, False, "print the available devices and exit"),
    Flag("cont_batching", ("-cb", "--cont-batching"), ("LLAMA_ARG_CONT_BATCHING",), T, True, "continuous (dynamic) batching", neg=("-nocb", "--no-cont-batching")),
    Flag("cache_reuse", ("--cache-reuse",), ("LLAMA_ARG_CACHE_REUSE",), V, 0, "min chunk size to reuse from the cache via KV shifting", _UINT, metavar="N", group=SERVER),
    # -- server
    Flag("host", ("--host",), ("LLAMA_ARG_HOST",), V, "127.0.0.1", "IP address to listen on", text, metavar="HOST", group=SERVER),
    Flag("port", ("--port",), ("LLAMA_ARG_PORT",), V, 8080, "port to listen on (0 = any free port)", int_in(0, 65535, "a port number 0-65535"), metavar="PORT", group=SERVER),
    Flag("api_key", ("--api-key",), ("LLAMA_API_KEY",), A, (), "API key(s), comma-separated", csv_keys, metavar="KEY", group=SERVER),
    Flag("api_key_file", ("--api-key-file",), ("LLAMA_ARG_API_KEY_FILE",), A, (), "file of API keys, one per line ('#' lines are comments)", keys_from_file, metavar="FNAME", group=SERVER),
    Flag("timeout", ("-to", "--timeout"), ("LLAMA_ARG_TIMEOUT",), V, 600, "read/write timeout in seconds", _UINT, metavar="N", group=SERVER),
    Flag("embeddings", ("--embedding", "--embeddings"), ("LLAMA_ARG_EMBEDDINGS",), S, False, "enable the embedding endpoints", group=SERVER),
    Flag("reranking", ("--rerank", "--reranking"), ("LLAMA_ARG_RERANKING",), S, False, "enable the reranking endpoint (implies --embeddings and --pooling rank)", group=SERVER),
    Flag("pooling", ("--pooling",), ("LLAMA_ARG_POOLING",), V, None, "embedding pooling (default: the model's)", choice("none", "mean", "cls", "last", "rank"), metavar="{none,mean,cls,last,rank}", group=SERVER),
    Flag("metrics", ("--metrics",), ("LLAMA_ARG_ENDPOINT_METRICS",), S, False, "enable the Prometheus /metrics endpoint", group=SERVER),
    Flag("props", ("--props",), ("LLAMA_ARG_ENDPOINT_PROPS",), S, False, "allow changing global properties via POST /props", group=SERVER),
    Flag("slots", ("--slots",), ("LLAMA_ARG_ENDPOINT_SLOTS",), T, True, "the /slots monitoring endpoint", neg=("--no-slots",), group=SERVER),
    Flag("slot_save_path", ("--slot-save-path",), (), V, None, "directory to save slot KV caches in", existing_dir, metavar="PATH", group=SERVER),
    Flag("jinja", ("--jinja",), ("LLAMA_ARG_JINJA",), T, True, "Jinja chat templates", neg=("--no-jinja",), group=SERVER),
    Flag("chat_template", ("--chat-template",), ("LLAMA_ARG_CHAT_TEMPLATE",), V, None, "chat template (default: the model's)", text, metavar="JINJA_TEMPLATE", group=SERVER),
    Flag("chat_template_file", ("--chat-template-file",), ("LLAMA_ARG_CHAT_TEMPLATE_FILE",), V, None, "file holding the chat template", readable_file, metavar="JINJA_TEMPLATE_FILE", group=SERVER),
    Flag("chat_template_kwargs", ("--chat-template-kwargs",), ("LLAMA_ARG_CHAT_TEMPLATE_KWARGS", "LLAMA_CHAT_TEMPLATE_KWARGS"), V, {}, "extra template variables, a JSON object", json_object, metavar="JSON", group=SERVER),
    Flag("reasoning_format", ("--reasoning-format",), ("LLAMA_ARG_THINK",), V, "auto", "where thoughts go: none, deepseek, deepseek-legacy or auto", choice("none", "deepseek", "deepseek-legacy", "auto"), metavar="FORMAT", group=SERVER),
    Flag("verbose", ("-v", "--verbose", "--log-verbose"), (), S, False, "log everything (debug level)", group=SERVER),
    # -- sampling defaults of requests
    Flag("temp", ("--temp", "--temperature"), ("LLAMA_ARG_TEMPERATURE",), V, 0.8, "temperature (negative = 0)", float_in(0.0, None, clamp_lo=True), metavar="N", group=SAMPLING),
    Flag("top_k", ("--top-k",), ("LLAMA_ARG_TOP_K",), V, 40, "top-k sampling (0 = disabled)", int_in(), metavar="N", group=SAMPLING),
    Flag("top_p", ("--top-p",), ("LLAMA_ARG_TOP_P",), V, 0.95, "top-p sampling (1.0 = disabled)", float_in(0.0, 1.0), metavar="N", group=SAMPLING),
    Flag("min_p", ("--min-p",), ("LLAMA_ARG_MIN_P",), V, 0.05, "min-p sampling (0.0 = disabled)", float_in(0.0, 1.0), metavar="N", group=SAMPLING),
    Flag("seed", ("-s", "--seed"), (), V, -1, "RNG seed (-1 = random)", int_in(-1, 0xFFFFFFFF, "an integer from -1 to 4294967295"), metavar="SEED", group=SAMPLING),
    # -- llamajit's own
    Flag("n_probs_max", ("--n-probs-max",), ("LLAMA_ARG_N_PROBS_MAX",), V, 100, "largest n_probs / top_logprobs a request may ask for", _UINT, metavar="N", group=OURS),
    Flag("drain_timeout", ("--drain-timeout",), ("LLAMA_ARG_DRAIN_TIMEOUT",), V, 30, "on SIGTERM, seconds that requests in flight may take to finish before exit", _UINT, metavar="SECONDS", group=OURS),
    Flag("log_prompts", ("--log-prompts",), ("LLAMA_ARG_LOG_PROMPTS",), S, False, "include prompt text in the request logs", group=OURS),
    # -- accepted for compatibility, no effect
    Flag("flash_attn", ("-fa", "--flash-attn"), ("LLAMA_ARG_FLASH_ATTN",), O, "auto", "Flash Attention: on, off or auto", flash_attn, metavar="on|off|auto", group=COMPAT, const="on"),
    Flag("webui", ("--ui", "--webui"), ("LLAMA_ARG_UI", "LLAMA_ARG_WEBUI"), T, True, "the Web UI (llamajit serves none)", neg=("--no-ui", "--no-webui"), group=COMPAT),
    Flag("mlock", ("--mlock",), ("LLAMA_ARG_MLOCK",), S, False, "lock the model in RAM", group=COMPAT),
    Flag("mmap", ("--mmap",), ("LLAMA_ARG_MMAP",), T, True, "memory-map the model", neg=("--no-mmap",), group=COMPAT),
    Flag("log_disable", ("--log-disable",), (), S, False, "disable logging", group=COMPAT),
)
