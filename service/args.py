"""`llama-server` command line: llama-server's flags, short forms, defaults and LLAMA_ARG_* variables.

`parse_args(argv, environ)` returns a frozen `ServerArgs`. The flags themselves are the table in
`service.args_spec`. Rules, as llama-server applies them:
- a flag given on the command line beats its environment variable (a warning says so);
- an empty environment variable counts as unset (as llama.cpp's common_get_env reads it);
- `--long_name` is read as `--long-name`;
- boolean variables take 1/0, true/false, on/off, enabled/disabled; for a --x/--no-x pair,
  LLAMA_ARG_NO_X set truthy turns it off and wins over LLAMA_ARG_X.
Any bad value (from argv or the environment), an unknown flag or a missing argument exits 2
with a message on stderr naming the flag or the variable. A missing model is not an error
here: the caller reports it.

`python -m service.args ARGS...` prints the parsed ServerArgs as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from service import __version__
from service.args_spec import COMPAT, FLAGS, GENERAL, OURS, SAMPLING, SERVER, Flag, Kind, parse_bool

AUTO_PARALLEL_SLOTS = 4  # llama-server: "n_parallel is set to auto, using n_parallel = 4 and kv_unified = true"


@dataclass(frozen=True)
class ServerArgs:
    """Parsed command line. Defaults are current llama-server's (see service.args_spec)."""

    model: str | None = None
    alias: str | None = None
    hf_repo: str | None = None
    hf_file: str | None = None
    ctx_size: int = 0  # 0 = the model's training context
    n_predict: int = -1  # -1 = until end of generation or context
    parallel: int = -1  # -1 = auto, see resolved_parallel()
    batch_size: int = 2048
    ubatch_size: int = 512
    threads: int = -1  # <= 0: all cores
    n_gpu_layers: str = "auto"  # "N", "auto" or "all"
    device: str | None = None  # "none" or "CUDA0[,CUDA1..]"
    list_devices: bool = False
    cont_batching: bool = True
    cache_reuse: int = 0
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: tuple[str, ...] = ()  # empty = no authentication
    timeout: int = 600
    embeddings: bool = False  # True also when reranking (llama-server sets both)
    reranking: bool = False
    pooling: str | None = None  # None = the model's; "rank" when reranking and none given
    metrics: bool = False
    props: bool = False
    slots: bool = True
    slot_save_path: str | None = None
    jinja: bool = True
    chat_template: str | None = None
    chat_template_file: str | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    reasoning_format: str = "auto"
    verbose: bool = False
    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    seed: int = -1  # -1 (or 0xFFFFFFFF) = random
    n_probs_max: int = 100  # llamajit: cap on a request's n_probs / top_logprobs
    log_prompts: bool = False  # llamajit: include prompt text in request logs
    drain_timeout: int = 30  # llamajit: SIGTERM grace for requests in flight, seconds
    # Accepted for compatibility with llama-server scripts; no effect in llamajit.
    flash_attn: str = "auto"
    webui: bool = True
    mlock: bool = False
    mmap: bool = True
    log_disable: bool = False

    def resolved_parallel(self) -> int:
        """Number of slots. llama-server's rule for -np -1 (its default): 4 slots, and the KV
        cache is unified, i.e. all slots share the one ctx_size pool (see kv_unified()); an
        explicit -np N gives N slots and splits ctx_size evenly between them."""
        return AUTO_PARALLEL_SLOTS if self.parallel < 0 else self.parallel

    def kv_unified(self) -> bool:
        """True when the slots share one context pool (llama-server's auto -np), rather than
        each slot getting ctx_size / parallel tokens."""
        return self.parallel < 0


_GROUP_TITLES = {
    GENERAL: "model and context",
    SERVER: "server",
    SAMPLING: "sampling defaults (a request's own fields override them)",
    OURS: "llamajit's own flags",
    COMPAT: "accepted for compatibility with llama-server scripts (parsed, stored, no effect in llamajit)",
}
_LONG_NAMES = frozenset(n for f in FLAGS for n in (*f.names, *f.neg) if n.startswith("--"))


class _Toggle(argparse.Action):
    """--x / --no-x on one action: the name used decides the value."""

    def __init__(self, option_strings, dest, neg=(), **kw):
        self.neg = frozenset(neg)
        super().__init__(option_strings, dest, nargs=0, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string not in self.neg)


class _Extend(argparse.Action):
    """Repeatable flag whose converted values are tuples: concatenate them."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, getattr(namespace, self.dest, ()) + values)


def _arg_type(flag: Flag):
    def conv(s: str):
        try:
            return flag.conv(s)
        except ValueError as e:  # argparse reports it as "argument -c/--ctx-size: <message>"
            raise argparse.ArgumentTypeError(str(e)) from None
    conv.__name__ = flag.dest
    return conv


def _help(flag: Flag) -> str:
    d = flag.default
    if isinstance(d, bool):
        shown = "enabled" if d else "disabled"
    elif d is None or d == () or d == {}:
        shown = "none"
    else:
        shown = str(d)
    envs = (*flag.env, *flag.neg_env())
    env = f" (env: {', '.join(envs)})" if envs else ""
    default = "" if "(default:" in flag.help else f" (default: {shown})"  # a row may word its own
    return f"{flag.help}{default}{env}".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llama-server", usage="llama-server [options]", add_help=False, allow_abbrev=False,
        description="llamajit: llama.cpp's llama-server rebuilt in Python with Numba kernels. "
        "Flags, defaults and LLAMA_ARG_* variables are llama-server's; a flag beats its variable.",
    )
    p.add_argument("-h", "--help", "--usage", action="help", help="print usage and exit")
    p.add_argument("--version", action="version", version=f"llamajit {__version__}", help="print the version and exit")
    groups = {g: p.add_argument_group(t) for g, t in _GROUP_TITLES.items()}
    for f in FLAGS:
        g, kw = groups[f.group], dict(dest=f.dest, default=argparse.SUPPRESS, help=_help(f))
        if f.kind is Kind.SWITCH:
            g.add_argument(*f.names, action="store_const", const=True, **kw)
        elif f.kind is Kind.TOGGLE:
            g.add_argument(*f.names, *f.neg, action=_Toggle, neg=f.neg, **kw)
        elif f.kind is Kind.APPEND:
            g.add_argument(*f.names, action=_Extend, type=_arg_type(f), metavar=f.metavar, **kw)
        elif f.kind is Kind.OPTIONAL:
            g.add_argument(*f.names, nargs="?", const=f.const, type=_arg_type(f), metavar=f.metavar, **kw)
        else:
            g.add_argument(*f.names, type=_arg_type(f), metavar=f.metavar, **kw)
    return p


def _normalize(argv: Sequence[str]) -> list[str]:
    """llama-server reads `--ctx_size` as `--ctx-size`; only known long flags are rewritten."""
    out = []
    for tok in argv:
        name, eq, rest = tok.partition("=")
        fixed = name.replace("_", "-")
        out.append(fixed + eq + rest if tok.startswith("--") and fixed in _LONG_NAMES else tok)
    return out


def _from_env(parser: argparse.ArgumentParser, f: Flag, environ: Mapping[str, str]) -> tuple[bool, Any]:
    """(found, value) of a flag's environment variables; exits 2 naming a bad one."""
    def fail(name: str, value: str, msg: str):
        parser.error(f"environment variable {name}={value!r}: {msg}")

    for name in f.neg_env():  # LLAMA_ARG_NO_X wins over LLAMA_ARG_X, as in llama.cpp
        value = environ.get(name, "")
        if value:
            try:
                if parse_bool(value):
                    return True, False
            except ValueError as e:
                fail(name, value, str(e))
    for name in f.env:
        value = environ.get(name, "")
        if not value:
            continue
        try:
            if f.kind in (Kind.SWITCH, Kind.TOGGLE):
                return True, parse_bool(value)
            return True, f.conv(value)
        except ValueError as e:
            fail(name, value, str(e))
    return False, None


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> ServerArgs:
    parser = build_parser()
    given = vars(parser.parse_args(_normalize(argv)))
    values: dict[str, Any] = {}
    for f in FLAGS:
        if f.dest in given:
            values[f.dest] = given[f.dest]
            shadowed = [e for e in (*f.env, *f.neg_env()) if environ.get(e)]
            if shadowed:
                print(f"llama-server: warning: {', '.join(shadowed)} is set, but the command-line flag "
                      f"{f.names[-1]} overrides it", file=sys.stderr)
            continue
        found, value = _from_env(parser, f, environ)
        values[f.dest] = value if found else f.default
    # --api-key and --api-key-file add up (each one from its flag, else from its variable).
    keys = values.pop("api_key") + values.pop("api_key_file")
    values["api_keys"] = tuple(dict.fromkeys(keys))
    if values["reranking"]:  # llama-server's --reranking sets embedding = true and pooling = rank
        values["embeddings"] = True
        if values["pooling"] is None:
            values["pooling"] = "rank"
    return ServerArgs(**values)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    print(json.dumps(dataclasses.asdict(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
