"""llama-server's command-line flags as a table: one `Flag` row per flag.

Every spelling and LLAMA_ARG_* variable of llama-server's --help (llama.cpp 0c1e570) has a row;
names, variables and value checks are llama.cpp's (common/arg.cpp). Defaults live in
`service.args_values.ServerArgs`, one field per row `dest`. Each row records its effect here:

- WORKS: it changes behaviour as in llama-server;
- INERT: accepted and stored, no effect in llamajit, `why` says why ("not implemented yet" for
  behaviour another change will wire up: flip the row to WORKS and read the ServerArgs field);
- UNBUILT: a feature llamajit does not have yet (`why` names it); using the flag exits 2 saying
  so. A value that asks for the feature to be off (`off`, e.g. --no-mmproj) is accepted as INERT.

The rows are in service/args_table_main.py, args_table_cache.py, args_table_server.py and
args_table_spec.py (WORKS, a few INERT),
args_table_inert.py and args_table_unbuilt.py; the converters in service/args_conv.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

NOT_YET = "not implemented yet"


class Kind(Enum):
    """How a flag takes its value.

    VALUE:  one argument, converted by `conv` (argv and env alike).
    SWITCH: no argument; present = True. Its env var takes a truthy/falsy spelling.
    TOGGLE: --x / --no-x pair. Env: truthy/falsy; LLAMA_ARG_NO_X truthy forces False.
    APPEND: one argument, may repeat; the converted tuples are concatenated (None clears).
    OPTIONAL: an argument that may be left out (then `const` is used), e.g. a bare `-fa`.
    PAIR:   two arguments (--control-vector-layer-range START END), each converted.
    PRESET: no argument; sets the ServerArgs fields in `const` (a dict), as if given right there.
    EXIT:   prints something and exits 0 (`const` names what: help, version, completion).
    """

    VALUE = "value"
    SWITCH = "switch"
    TOGGLE = "toggle"
    APPEND = "append"
    OPTIONAL = "optional"
    PAIR = "pair"
    PRESET = "preset"
    EXIT = "exit"


class Effect(Enum):
    WORKS = "works"
    INERT = "inert"
    UNBUILT = "unbuilt"


# Groups of the WORKS rows in --help; INERT and UNBUILT rows are grouped by their effect.
GENERAL, SERVER, SAMPLING, OURS, PRESETS = "general", "server", "sampling", "llamajit", "presets"


@dataclass(frozen=True)
class Flag:
    dest: str  # the ServerArgs field (UNBUILT rows: a name only, nothing is stored)
    names: tuple[str, ...]
    env: tuple[str, ...]
    kind: Kind
    help: str
    conv: Callable[[str], Any] | None = None
    neg: tuple[str, ...] = ()  # TOGGLE: the names that turn it off
    metavar: str | tuple[str, str] | None = None
    group: str = GENERAL
    const: Any = None  # OPTIONAL: the bare flag's value; PRESET: the fields it sets; EXIT: what it prints
    effect: Effect = Effect.WORKS
    why: str = ""  # INERT: why it changes nothing; UNBUILT: the missing feature
    off: Callable[[Any], bool] | None = None  # UNBUILT: True for a value asking for the feature off
    off_why: str = ""  # ... and why that value is accepted

    def neg_env(self) -> tuple[str, ...]:
        """LLAMA_ARG_NO_X for each LLAMA_ARG_X of a toggle (llama.cpp derives them the same way)."""
        if self.kind is not Kind.TOGGLE:
            return ()
        return tuple(e.replace("LLAMA_ARG_", "LLAMA_ARG_NO_", 1) for e in self.env if e.startswith("LLAMA_ARG_"))

    @property
    def stored(self) -> bool:
        """Whether the value lands in a ServerArgs field (UNBUILT, EXIT and PRESET rows have none of
        their own: a preset sets other rows' fields)."""
        return self.effect is not Effect.UNBUILT and self.kind not in (Kind.EXIT, Kind.PRESET)

    def no_effect_reason(self, value: Any) -> str | None:
        """Why this value, once given, changes nothing (None: it works)."""
        if self.effect is Effect.INERT:
            return self.why
        if self.effect is Effect.UNBUILT and self.off is not None and self.off(value):
            return self.off_why
        return None

    def unbuilt_message(self) -> str:
        return f"{self.why} is not available in llamajit yet"


# Row builders for the tables: names and variables as space-separated strings, so that a row
# reads like llama-server's help line.
def _split(s: str) -> tuple[str, ...]:
    return tuple(s.split())


def value(dest: str, names: str, env: str, help: str, conv: Callable[[str], Any], metavar: Any = "N", **kw) -> Flag:
    return Flag(dest, _split(names), _split(env), Kind.VALUE, help, conv, metavar=metavar, **kw)


def append(dest: str, names: str, env: str, help: str, conv: Callable[[str], Any], metavar: str, **kw) -> Flag:
    return Flag(dest, _split(names), _split(env), Kind.APPEND, help, conv, metavar=metavar, **kw)


def optional(dest: str, names: str, env: str, help: str, conv: Callable[[str], Any], const: Any, metavar: str,
             **kw) -> Flag:
    return Flag(dest, _split(names), _split(env), Kind.OPTIONAL, help, conv, metavar=metavar, const=const, **kw)


def switch(dest: str, names: str, env: str, help: str, **kw) -> Flag:
    return Flag(dest, _split(names), _split(env), Kind.SWITCH, help, **kw)


def toggle(dest: str, names: str, neg: str, env: str, help: str, **kw) -> Flag:
    return Flag(dest, _split(names), _split(env), Kind.TOGGLE, help, neg=_split(neg), **kw)


def __getattr__(name: str) -> Any:
    """FLAGS and BY_NAME, assembled on first use: the table modules import this one (Flag, Kind),
    so importing them here at load time would be circular."""
    if name not in ("FLAGS", "BY_NAME"):
        raise AttributeError(name)
    from service.args_table_cache import CACHE_FLAGS
    from service.args_table_inert import INERT_FLAGS
    from service.args_table_main import MAIN_FLAGS
    from service.args_table_server import SERVER_FLAGS
    from service.args_table_spec import SPEC_FLAGS
    from service.args_table_unbuilt import UNBUILT_FLAGS

    flags = MAIN_FLAGS + CACHE_FLAGS + SERVER_FLAGS + SPEC_FLAGS + INERT_FLAGS + UNBUILT_FLAGS
    globals()["FLAGS"] = flags
    globals()["BY_NAME"] = {n: f for f in flags for n in (*f.names, *f.neg)}
    return globals()[name]
