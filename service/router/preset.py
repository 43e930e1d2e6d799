"""--models-preset files, and the command line each model's server is started with.

A preset file is llama-server's INI: an optional `version = 1` before the first section, a `[*]`
section whose options every model gets, and one section per model (its name). A key is a flag
without its dashes, long (`ctx-size`) or short (`c`), or one of the flag's LLAMA_ARG_* variables;
a switch or toggle takes a truthy or falsy value (`jinja = true`, `context-shift = off`). Three keys
exist only in presets: load-on-startup, stop-timeout and dedup-cache-models. `;` and `#` start
comment lines; a key given twice keeps its last value. A key that is no flag of llama-server is an
error naming the file, section and key.

A model's server gets, in this order (the later one wins, as on any command line): the flags that
name its file (its source), the `[*]` options, its own section's, the router's own command line,
then the address and name the router gives it. The router's flags that only it uses (address, TLS,
API keys, --api-prefix, --models-*) never reach a model's server: it listens on loopback and the
router checks keys and prefixes before forwarding.
"""

from __future__ import annotations

import configparser
from typing import Iterable, Mapping

from service.args_conv import parse_bool
from service.args_spec import Kind

PRESET_ONLY = frozenset({"load-on-startup", "stop-timeout", "dedup-cache-models"})
GLOBAL = "*"
_ROOT = "\x00root"  # the keys before the first section (version)

# The router's own flags (ServerArgs fields): never passed to a model's server
RESERVED = frozenset({"host", "port", "api_key", "api_key_file", "ssl_key_file", "ssl_cert_file", "api_prefix",
                      "reuse_port", "models_dir", "models_preset", "models_max", "models_autoload"})
# ... and those that name the model, which its source decides (a preset may set them)
MODEL_DESTS = frozenset({"model", "hf_repo", "hf_file", "alias", "model_url"})


class PresetError(ValueError):
    pass


def _flags():
    from service.args_spec import BY_NAME, FLAGS

    return BY_NAME, FLAGS


def lookup(key: str):
    """(Flag, turns it off) for a preset key; None when it is no flag."""
    by_name, flags = _flags()
    if key.startswith("LLAMA_") or key.isupper():
        for f in flags:
            if key in f.env:
                return f, False
            if key in f.neg_env():
                return f, True
        return None
    for spelling in ("--" + key, "-" + key):
        f = by_name.get(spelling)
        if f is not None:
            return f, spelling in f.neg
    return None


def read(path: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(the [*] options, {model name: its options}) of a preset file; PresetError on a bad one."""
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"), strict=False,
                                       default_section="\x00none", empty_lines_in_values=False)
    parser.optionxform = str  # keys keep their case: LLAMA_ARG_* names
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_string(f"[{_ROOT}]\n" + fh.read(), source=path)
    except (OSError, UnicodeDecodeError, configparser.Error) as e:
        raise PresetError(f"--models-preset {path}: {e}") from None
    sections = {s: dict(parser.items(s)) for s in parser.sections() if s != _ROOT}
    for name, options in sections.items():
        for key in options:
            if key not in PRESET_ONLY and lookup(key) is None:
                raise PresetError(f"--models-preset {path}: [{name}] {key}: not a llama-server flag")
    return sections.pop(GLOBAL, {}), sections


def truthy(value: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError:
        return False


def to_argv(options: Mapping[str, str], skip: Iterable[str] = ()) -> list[str]:
    """Command-line flags for preset options (the preset-only keys and `skip` dests left out)."""
    skip = frozenset(skip) | RESERVED
    out: list[str] = []
    for key, value in options.items():
        if key in PRESET_ONLY:
            continue
        f, negated = lookup(key)
        if f.dest in skip:
            continue
        if f.kind is Kind.TOGGLE:
            on = truthy(value) != negated
            out.append(f.names[-1] if on else f.neg[-1])
        elif f.kind in (Kind.SWITCH, Kind.PRESET, Kind.EXIT):
            if truthy(value):
                out.append(f.names[-1])
        elif f.kind is Kind.PAIR:
            out += [f.names[-1], *value.split()]
        else:
            out += [f.names[-1], value]
    return out


def strip(argv: list[str], dests: Iterable[str]) -> list[str]:
    """argv without the flags (and their values) whose ServerArgs field is in `dests`."""
    by_name, _ = _flags()
    dests = frozenset(dests)
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        name, eq, _ = tok.partition("=")
        f = by_name.get(name.replace("_", "-") if name.startswith("--") else name)
        n = 0
        if f is not None and not eq:
            if f.kind in (Kind.VALUE, Kind.APPEND):
                n = 1
            elif f.kind is Kind.PAIR:
                n = 2
            elif f.kind is Kind.OPTIONAL and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                n = 1
        if f is None or f.dest not in dests:
            out += argv[i:i + 1 + n]
        i += 1 + n
    return out


def child_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The router's environment without the variables of its own flags."""
    _, flags = _flags()
    drop = {"LLAMA_API_KEY"} | {e for f in flags if f.dest in RESERVED for e in (*f.env, *f.neg_env())}
    return {k: v for k, v in environ.items() if k not in drop}

