"""`llama-server` command line: llama-server's flags, short forms, defaults and LLAMA_ARG_* variables.

`parse_args(argv, environ)` returns a frozen `ServerArgs` (service.args_values). The flags are
the table in `service.args_spec`, each marked WORKS, INERT or UNBUILT. Rules, as llama-server
applies them:
- a flag given on the command line beats its environment variable (a warning says so);
- flags apply in command-line order: the later of two wins, a preset (--fim-qwen-*) sets its
  fields where it stands, the later of --grammar(-file) and --json-schema(-file) wins;
- an empty environment variable counts as unset (as llama.cpp's common_get_env reads it);
- `--long_name` is read as `--long-name`;
- boolean variables take 1/0, true/false, on/off, enabled/disabled; for a --x/--no-x pair,
  LLAMA_ARG_NO_X set truthy turns it off and wins over LLAMA_ARG_X.
Any bad value (from argv or the environment), an unknown flag, a missing argument or an UNBUILT
feature exits 2 with a message on stderr naming the flag or the variable. INERT flags given are
listed in `ServerArgs.no_effect` (the server logs them). A missing model is not an error here:
the caller reports it.

`python -m service.args ARGS...` prints the parsed ServerArgs as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
from typing import Any, Mapping, Sequence

from service import __version__
from service.args_conv import parse_bool, process_escapes
from service.args_spec import GENERAL, NOT_YET, OURS, PRESETS, SAMPLING, SERVER, Effect, Flag, Kind
from service.args_values import AUTO_PARALLEL_SLOTS, ServerArgs

__all__ = ["AUTO_PARALLEL_SLOTS", "ServerArgs", "build_parser", "parse_args"]

_INERT, _NOT_YET, _UNBUILT = "inert", "not-yet", "unbuilt"
_GROUP_TITLES = {
    GENERAL: "model and context",
    SERVER: "server",
    SAMPLING: "sampling defaults (a request's own fields override them)",
    OURS: "llamajit's own flags",
    PRESETS: "presets: a Hugging Face model and its settings in one flag",
    _INERT: "accepted, no effect in llamajit (a warning at startup says so)",
    _NOT_YET: "accepted, not implemented yet: no effect for now (a warning at startup says so)",
    _UNBUILT: "not available in llamajit yet: using one exits 2 (a spelling that turns it off is accepted)",
}


def _flags() -> tuple[Flag, ...]:
    from service.args_spec import FLAGS

    return FLAGS


def _section(f: Flag) -> str:
    if f.effect is Effect.INERT:
        return _NOT_YET if f.why == NOT_YET else _INERT
    return _UNBUILT if f.effect is Effect.UNBUILT else f.group


def _help(f: Flag) -> str:
    env = (*f.env, *f.neg_env())
    parts = [f.help]
    if f.stored and "(default:" not in f.help:  # a row may word its own default
        d = _default(f.dest)
        if isinstance(d, bool):
            shown = "enabled" if d else "disabled"
        elif d in (None, (), {}, ""):
            shown = "none"
        elif isinstance(d, tuple):  # the sampler chain as llama-server writes it; "\n" as two characters
            shown = (";" if f.dest == "samplers" else " ").join(str(x).encode("unicode_escape").decode() for x in d)
        else:
            shown = str(d)
        parts.append(f"(default: {shown})")
    if f.kind is Kind.PRESET:
        parts.append("(sets " + ", ".join(f"{k}={v}" for k, v in f.const.items()) + ")")
    if env:
        parts.append(f"(env: {', '.join(env)})")
    if f.effect is Effect.INERT:
        parts.append(f"(no effect in llamajit: {f.why})")
    elif f.effect is Effect.UNBUILT:
        parts.append(f"(not available in llamajit yet: {f.why}" + (f"; turning it off is accepted: {f.off_why})"
                                                                    if f.off else ")"))
    return " ".join(parts).replace("%", "%%")


def _default(dest: str) -> Any:
    """A field's default; () for --api-key and --api-key-file, which add up into api_keys."""
    fld = ServerArgs.__dataclass_fields__.get(dest)
    if fld is None:
        return ()
    return fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()


class _Act(argparse.Action):
    """Every flag's action: stores (or appends) the value, notes which spelling was given in what
    order (namespace._given), and refuses an UNBUILT feature at once."""

    def __init__(self, option_strings, dest, row: Flag, **kw):
        self.row = row
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, ns, values, option_string=None):
        f = self.row
        if f.kind is Kind.EXIT:
            _exit(parser, f.const)
        value = {Kind.SWITCH: True, Kind.TOGGLE: option_string not in f.neg, Kind.PRESET: None}.get(f.kind, values)
        if f.kind is Kind.PAIR:
            value = tuple(values)
        if f.effect is Effect.UNBUILT and not (f.off and f.off(value)):
            parser.error(f"{option_string}: {f.unbuilt_message()}")
        ns.__dict__.setdefault("_given", []).append((f, option_string, value))
        if f.kind is Kind.PRESET:
            for dest, v in f.const.items():
                setattr(ns, dest, v)
        elif f.kind is Kind.APPEND:  # a converted None ("none") clears what came before
            setattr(ns, self.dest, () if value is None else getattr(ns, self.dest, ()) + value)
        else:
            setattr(ns, self.dest, value)


def _exit(parser: argparse.ArgumentParser, what: str) -> None:
    if what == "help":
        parser.print_help()
    elif what == "version":
        print(f"llamajit {__version__}")
    else:  # a bash completion script, as llama.cpp's --completion-bash prints for its tools
        names = " ".join(n for f in _flags() for n in (*f.names, *f.neg))
        print('_llama_server() {\n    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"\n'
              '    case "$prev" in\n'
              "        -m|--model) COMPREPLY=( $(compgen -f -X '!*.gguf' -- \"$cur\") $(compgen -d -- \"$cur\") ) ;;\n"
              f'        *) COMPREPLY=( $(compgen -W "{names}" -- "$cur") ) ;;\n    esac\n}}\n'
              "complete -F _llama_server llama-server")
    parser.exit(0)


class _Formatter(argparse.HelpFormatter):
    """Names, then the argument once (`-c, --ctx-size N`), as llama-server's help lists them."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=40)

    def _split_lines(self, text: str, width: int) -> list[str]:  # flag and variable names stay whole
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        names = ", ".join(action.option_strings)
        return names if action.nargs == 0 else f"{names} {self._format_args(action, action.dest.upper())}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llama-server", usage="llama-server [options]", add_help=False, allow_abbrev=False,
        formatter_class=_Formatter,
        description="llamajit: llama.cpp's llama-server rebuilt in Python with Numba kernels. "
        "Flags, defaults and LLAMA_ARG_* variables are llama-server's; a flag beats its variable.",
    )
    groups = {g: p.add_argument_group(t) for g, t in _GROUP_TITLES.items()}
    for f in _flags():
        kw: dict[str, Any] = dict(dest=f.dest, default=argparse.SUPPRESS, help=_help(f), action=_Act, row=f)
        if f.kind in (Kind.SWITCH, Kind.TOGGLE, Kind.PRESET, Kind.EXIT):
            kw["nargs"] = 0
        else:
            kw.update(type=_arg_type(f), metavar=f.metavar)
        if f.kind is Kind.OPTIONAL:  # argparse shows the brackets of an optional argument itself
            kw.update(nargs="?", const=f.const, metavar=f.metavar.strip("[]"))
        elif f.kind is Kind.PAIR:
            kw["nargs"] = 2
        groups[_section(f)].add_argument(*f.names, *f.neg, **kw)
    return p


def _arg_type(flag: Flag):
    def conv(s: str):
        try:
            return flag.conv(s)
        except ValueError as e:  # argparse reports it as "argument -c/--ctx-size: <message>"
            raise argparse.ArgumentTypeError(str(e)) from None
    conv.__name__ = flag.dest
    return conv


def _normalize(argv: Sequence[str]) -> list[str]:
    """llama-server reads `--ctx_size` as `--ctx-size`; only known long flags are rewritten."""
    from service.args_spec import BY_NAME

    out = []
    for tok in argv:
        name, eq, rest = tok.partition("=")
        fixed = name.replace("_", "-")
        out.append(fixed + eq + rest if tok.startswith("--") and fixed in BY_NAME else tok)
    return out


def _from_env(parser: argparse.ArgumentParser, f: Flag, environ: Mapping[str, str]) -> tuple[str, Any] | None:
    """(variable, value) of a flag's environment variables, None when unset; exits 2 naming a bad one."""
    def fail(name: str, value: str, msg: str):
        parser.error(f"environment variable {name}={value!r}: {msg}")

    for name in f.neg_env():  # LLAMA_ARG_NO_X wins over LLAMA_ARG_X, as in llama.cpp
        value = environ.get(name, "")
        try:
            if value and parse_bool(value):
                return name, False
        except ValueError as e:
            fail(name, value, str(e))
    for name in f.env:
        value = environ.get(name, "")
        if not value:
            continue
        try:
            if f.kind in (Kind.SWITCH, Kind.TOGGLE):
                return name, parse_bool(value)
            v = f.conv(value)
            return name, (v or ()) if f.kind is Kind.APPEND else v
        except ValueError as e:
            fail(name, value, str(e))
    return None


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> ServerArgs:
    parser = build_parser()
    given = vars(parser.parse_args(_normalize(argv)))
    order: list[tuple[Flag, str, Any]] = given.pop("_given", [])
    no_effect: dict[str, tuple[str, str]] = {}  # row dest -> (spelling, why): once per flag
    for f, spelling, value in order:
        why = f.no_effect_reason(value)
        if why is not None:
            no_effect.setdefault(f.dest, (spelling, why))
    values: dict[str, Any] = {}
    rows_of: dict[str, list[Flag]] = {}
    for f in _flags():
        if f.kind is not Kind.EXIT and f.kind is not Kind.PRESET:
            rows_of.setdefault(f.dest, []).append(f)
    for dest, rows in rows_of.items():
        if dest in given:
            shadowed = [e for f in rows for e in (*f.env, *f.neg_env()) if environ.get(e)]
            if shadowed:
                spelling = next(s for f, s, _ in reversed(order)
                                if f.dest == dest or (f.kind is Kind.PRESET and dest in f.const))
                print(f"llama-server: warning: {', '.join(shadowed)} is set, but the command-line flag "
                      f"{spelling} overrides it", file=sys.stderr)
            if rows[0].stored:
                values[dest] = given[dest]
            continue
        for f in rows:
            found = _from_env(parser, f, environ)
            if found is None:
                continue
            name, value = found
            if f.effect is Effect.UNBUILT and not (f.off and f.off(value)):
                parser.error(f"environment variable {name}: {f.unbuilt_message()}")
            why = f.no_effect_reason(value)
            if why is not None:
                no_effect.setdefault(dest, (name, why))
            if f.stored:
                values[dest] = value
            break
    return ServerArgs(**_finish(values, order), no_effect=tuple(no_effect.values()))


def _finish(values: dict[str, Any], order: list[tuple[Flag, str, Any]]) -> dict[str, Any]:
    """The rules that join several flags into ServerArgs fields."""
    # --api-key and --api-key-file add up (each one from its flag, else from its variable).
    keys = values.pop("api_key", ()) + values.pop("api_key_file", ())
    values["api_keys"] = tuple(dict.fromkeys(keys))
    if values.get("reranking"):  # llama-server's --reranking sets embedding = true and pooling = rank
        values["embeddings"] = True
        if values.get("pooling") is None:
            values["pooling"] = "rank"
    if values.get("escape", True) and "dry_sequence_breakers" in values:  # -e (default on), as llama.cpp after parsing
        values["dry_sequence_breakers"] = tuple(process_escapes(b) for b in values["dry_sequence_breakers"])
    if "grammar" in values and "json_schema" in values:  # both set: the later one on the command line wins
        last = [f.dest for f, _, _ in order if f.dest in ("grammar", "json_schema")][-1]
        values.pop("json_schema" if last == "grammar" else "grammar")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    print(json.dumps(dataclasses.asdict(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
