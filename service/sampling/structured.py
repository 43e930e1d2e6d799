"""Structured output a request asks for, and its compilation into a Constraint.

The HTTP edge decides which field wins (llama-server's rules for `grammar`, `json_schema` and
OpenAI's `response_format`, see service.api.protocol) and hands over a StructuredOutput: a GBNF
(or Lark) grammar, or a JSON schema, with the request field it came from. An empty schema means
any JSON object, as llama.cpp's converter has it.

Every error is a GrammarError (a ValueError: a 400) naming that field, raised before any
generation starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.sampling.grammar import Constraint, GrammarCompiler, GrammarError


@dataclass(frozen=True)
class StructuredOutput:
    grammar: str | None = None  # grammar text, when the output follows a grammar
    schema: dict[str, Any] | None = None  # a JSON schema, when it follows one
    field: str = "grammar"  # the request field it came from (json_schema, response_format, grammar)


def compile_structured(compiler: GrammarCompiler, s: StructuredOutput) -> Constraint:
    if s.schema is not None:
        try:
            return compiler.compile(json_schema=s.schema)
        except GrammarError as e:
            raise GrammarError(s.field, e.detail) from None
    return compiler.compile(grammar=s.grammar or "")
