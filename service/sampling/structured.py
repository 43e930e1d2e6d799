"""Which constraint a request asks for: llama-server's rules for `grammar`, `json_schema` and OpenAI's `response_format`.

- /completion (native and OpenAI-compatible, chat=False): a `grammar` field, when present,
  wins and `json_schema` is ignored (an empty grammar means no constraint).
- /v1/chat/completions (chat=True): `response_format` {"type": "json_object"} asks for a
  JSON object (its optional "schema" narrows it), {"type": "json_schema", "json_schema":
  {"schema": ...}} for that schema, and either replaces a `json_schema` field; "text" or no
  type asks for nothing; any other type is an error. A schema together with a non-empty
  grammar is an error.
- An empty schema means any JSON object, as llama.cpp's converter has it.

Every error is a GrammarError (a ValueError: a 400) raised before any generation starts.
llama-server answers some of these with a 500 or silently uses a default for a field of
the wrong type; here a client's mistake is always a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from service.sampling.grammar import Constraint, GrammarCompiler, GrammarError


def constraint_from_request(
    compiler: GrammarCompiler,
    grammar: Any = None,
    json_schema: Any = None,
    response_format: Any = None,
    *,
    chat: bool = False,
) -> Constraint | None:
    """The request's Constraint, or None when it asks for no structured output.

    Pass each field as decoded from the request's JSON, None when absent.
    """
    if grammar is not None and not isinstance(grammar, str):
        raise GrammarError("grammar", f"expected a string, got {type(grammar).__name__}")
    if json_schema is not None and not isinstance(json_schema, dict):
        raise GrammarError("json_schema", f"expected a JSON object, got {type(json_schema).__name__}")
    schema, source = json_schema, "json_schema"
    if response_format is not None:
        rf_schema = _schema_of(response_format)
        if rf_schema is not None:
            schema, source = rf_schema, "response_format"
    if chat:
        if schema is not None and grammar:
            raise GrammarError("grammar", 'either "json_schema" or "grammar" can be specified, but not both')
    elif grammar is not None:
        schema = None  # llama-server reads json_schema only when the request has no grammar field
    if schema is not None:
        try:
            return compiler.compile(json_schema=schema)
        except GrammarError as e:
            raise GrammarError(source, e.detail) from None
    if grammar:
        return compiler.compile(grammar=grammar)
    return None


def _schema_of(response_format: Any) -> dict | None:
    """The schema an OpenAI response_format asks for; None for plain text."""
    if not isinstance(response_format, dict):
        raise GrammarError("response_format", f"expected a JSON object, got {type(response_format).__name__}")
    kind = response_format.get("type")
    if kind is None or kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        where = "response_format.schema"
    elif kind == "json_schema":
        wrapper = response_format.get("json_schema")
        if wrapper is None:
            wrapper = {}
        if not isinstance(wrapper, dict):
            raise GrammarError("response_format.json_schema", f"expected a JSON object, got {type(wrapper).__name__}")
        schema = wrapper.get("schema")
        where = "response_format.json_schema.schema"
    else:
        raise GrammarError("response_format", f'type must be one of "text", "json_object" or "json_schema", got {kind!r}')
    if schema is None:
        return {}
    if not isinstance(schema, dict):
        raise GrammarError(where, f"expected a JSON object, got {type(schema).__name__}")
    return schema
