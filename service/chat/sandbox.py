"""The jinja2 environment chat templates run in, configured the way model templates expect.

Model templates are written for Hugging Face transformers' environment: trim_blocks, lstrip_blocks,
loop controls, a `tojson` that neither HTML-escapes nor sorts, and the globals raise_exception and
strftime_now. Unlike transformers we use the mutable SandboxedEnvironment, because real templates
call `.append` on their own lists; what the sandbox still refuses is any attribute starting with an
underscore (`''.__class__.__mro__` and friends), and unlike plain jinja2 it refuses loudly instead
of rendering an empty string.

This module is imported by the render worker process (worker.py), where the rendering runs under
a memory limit and a wall-clock deadline; the checks here only make the common failures clean
errors before the worker's hard limits have to kill anything.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from types import GeneratorType
from typing import Any

from jinja2 import Undefined, nodes
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment, SecurityError

__all__ = ["ChatSandbox", "TemplateRaised", "RenderLimit", "SecurityError", "render_bounded"]


class TemplateRaised(Exception):
    """The template called raise_exception(message): it refuses the conversation it was given."""


class RenderLimit(Exception):
    """Rendering ran past its deadline or produced more text than allowed; `kind` says which."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind  # "time" | "size"


def _raise_exception(message: Any = "") -> None:
    raise TemplateRaised(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | str | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # transformers' spelling: json.dumps spacing (", " and ": "), keys in insertion order, no
    # HTML escaping (jinja2's own tojson escapes <, >, & and ' for use inside HTML). Undefined is
    # null; what a filter such as map() yields is a list, as in llama.cpp's jinja runtime.
    if isinstance(value, Undefined):
        value = None
    elif isinstance(value, (GeneratorType, map, filter)):
        value = list(value)
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}`: transformers marks assistant spans with it (to
    build training masks); for rendering a prompt the body is emitted unchanged."""

    tags = {"generation"}

    def parse(self, parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class ChatSandbox(SandboxedEnvironment):
    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, autoescape=False,
                         extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do", GenerationTag])
        self.filters["tojson"] = _tojson
        self.filters["safe"] = str  # no autoescaping, so no Markup: `"x"|safe + text` must not escape text
        self.globals.pop("lipsum", None)  # a text generator nothing needs: one less amplifier
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.deadline = float("inf")  # monotonic seconds; set per render (the worker is serial)

    # `+` is ours: a string plus an undefined or none value is the string, as llama.cpp's jinja
    # runtime treats it (firefunction-v2 adds an undefined `functions` to its system prompt; a
    # strict `+` would fail the template where llama-server renders it).
    intercepted_binops = frozenset(["+"])

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "+":
            if isinstance(left, str) and (right is None or isinstance(right, Undefined)):
                return left
            if isinstance(right, str) and (left is None or isinstance(left, Undefined)):
                return right
        return super().call_binop(context, operator, left, right)

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimit("time", "chat template rendering exceeded its time limit")

    # Every call, attribute and item access passes through these hooks, so a runaway template
    # usually stops here with a clean error; loops that do none of these are left to the
    # worker's hard deadline.
    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's own signature)
        __self._check_time()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._check_time()
        return super().getitem(obj, argument)

    def unsafe_undefined(self, obj: Any, attribute: str):
        # jinja2 returns an Undefined that prints as "": a probing template would go unnoticed.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is not allowed in a chat template")


def render_bounded(template, context: dict, *, output_limit: int, deadline: float,
                   env: ChatSandbox) -> str:
    """Render `template` with `context`, stopping at `output_limit` characters or at `deadline`
    (time.monotonic seconds). Raises RenderLimit, TemplateRaised, or whatever the template
    itself raised."""
    env.deadline = deadline
    try:
        chunks: list[str] = []
        total = 0
        for chunk in template.generate(context):
            total += len(chunk)
            if total > output_limit:
                raise RenderLimit("size", f"chat template output exceeds {output_limit} characters")
            chunks.append(chunk)
            env._check_time()
        return "".join(chunks)
    finally:
        env.deadline = float("inf")
