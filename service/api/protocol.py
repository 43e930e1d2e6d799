"""The requests llama-server takes, typed once at the edge: msgspec Structs with its field names.

    req = decode(await request.body(), CompletionRequest)   # an ApiError 400 naming the field
    params = builder(request).task(req, prompt)             # service.api.params: -> TaskParams

Rules every request shares (llama-server's, or stricter where it would silently guess):
- unknown fields are ignored; a JSON null means the field's default (declared `T | None = default`);
- an integer field (`Int`) reads an integral number (40.0) as that integer; 40.5, "40" or true is a
  wrong type, a 400 that names the field rather than llama-server's silent fall-back to the default;
- a body that is not one JSON object is a 400.

This module holds the machinery and the native routes' requests; the chat dialects are in
protocol_chat.py (OpenAI), protocol_anthropic.py and protocol_responses.py, which convert into
the chat request. Nothing below service/api/ sees a request body: these Structs become
TaskParams (params.py) and service.chat.ChatInput (protocol_chat.py).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Literal, TypeVar

import msgspec

from service.api.errors import ApiError, bad_request
from service.sampling import SamplingParams, StructuredOutput

T = TypeVar("T")


class _IntMeta(type):
    def __instancecheck__(cls, obj: object) -> bool:  # what msgspec checks a dec_hook's result against
        return type(obj) is int


class Int(metaclass=_IntMeta):
    """A JSON integer field; an integral float (40.0) is read as that integer (see _dec_hook)."""


_JSON_KIND = {bool: "bool", str: "str", float: "float", list: "array", dict: "object"}


def _dec_hook(tp: type, obj: Any) -> Any:
    if tp is Int:
        if type(obj) is int:
            return obj
        if type(obj) is float and obj.is_integer():
            return int(obj)
        raise ValueError(f"Expected `int`, got `{_JSON_KIND.get(type(obj), type(obj).__name__)}`")
    raise NotImplementedError(tp)


class Request(msgspec.Struct, kw_only=True):
    """Base of every request: a field sent as null takes its declared default."""

    def __post_init__(self) -> None:
        for name, make in _defaults(type(self)):
            if getattr(self, name) is None:
                setattr(self, name, make())


@functools.cache
def _defaults(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, a maker of its default) for the fields whose default is not None."""
    out = []
    for f in msgspec.structs.fields(cls):
        if f.default_factory is not msgspec.NODEFAULT:
            out.append((f.name, f.default_factory))
        elif f.default is not None and f.default is not msgspec.NODEFAULT:
            out.append((f.name, lambda v=f.default: v))
    return tuple(out)


@functools.cache
def _decoder(kind: type) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(kind, dec_hook=_dec_hook)


_AT = re.compile(r"^(.*) - at `\$(.*)`$", re.S)


def _field_error(e: msgspec.ValidationError, where: str) -> ApiError:
    """msgspec's "Expected `int`, got `str` - at `$.n_predict`" as "n_predict: Expected ..." (the
    field first, as every other 400 here); `where` names the value that was checked."""
    m = _AT.match(str(e))
    if m is None:
        return bad_request(f"{where}: {e}" if where else str(e))
    path = (where + m.group(2)).lstrip(".")
    return bad_request(f"{path or 'the request body'}: {m.group(1)}")


def decode(raw: bytes, kind: type[T]) -> T:
    """The body as a `kind` request; a 400 naming the field for anything malformed."""
    try:
        return _decoder(kind).decode(raw or b"{}")
    except msgspec.ValidationError as e:
        raise _field_error(e, "") from None
    except msgspec.DecodeError as e:
        raise bad_request(f"invalid JSON in the request body: {e}") from None


def convert(obj: Any, kind: type[T], where: str) -> T:
    """A value already decoded from JSON (the field `where`) as `kind`, with decode()'s errors."""
    try:
        return msgspec.convert(obj, kind, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise _field_error(e, where) from None


# -- sampling and generation fields -----------------------------------------------------------------

# SamplingParams' scalar fields, each optional here (None: the server's default, from its flags).
_SCALARS = [(f.name, (Int if f.type is int else f.type) | None, None) for f in msgspec.structs.fields(SamplingParams)
            if f.type in (int, float, bool)]
LogitBias = list[tuple[int | str, float | bool]] | dict[str, float | bool]
SamplingFields = msgspec.defstruct(
    "SamplingFields",
    [*_SCALARS,
     ("dry_sequence_breakers", list[str] | None, None),
     ("samplers", list[str] | str | None, None),  # names, or a string of letters ("edkypmxt")
     ("logit_bias", LogitBias | None, None)],
    bases=(Request,), kw_only=True, module=__name__)
SAMPLING_NAMES = tuple(f.name for f in msgspec.structs.fields(SamplingFields))


class JsonSchemaFormat(Request):
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormat(Request):
    """OpenAI's response_format: text (nothing), a JSON object (schema optional) or a named schema."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None  # json_object: narrows the object
    json_schema: JsonSchemaFormat | None = None


class LoraScale(Request):
    """One entry of a request's `lora`: an adapter of GET /lora-adapters and its scale."""

    id: Int
    scale: float = 0.0


class Generation(SamplingFields):
    """Fields of every request that generates text (llama-server's completion parameters)."""

    n_predict: Int | None = None  # None: not given (then max_completion_tokens, then max_tokens)
    max_completion_tokens: Int | None = None  # aliases of n_predict on every route, as llama-server's
    max_tokens: Int | None = None
    stop: str | list[str] | None = None
    post_sampling_probs: bool | None = False
    cache_prompt: bool | None = None  # None: the server's --cache-prompt / --no-cache-prompt
    n_keep: Int | None = None  # context shift: prompt tokens kept (-1: all); None: the server's --keep
    n_discard: Int | None = 0  # context shift: tokens dropped after them (0: half of the rest)
    n_cache_reuse: Int | None = None  # min chunk moved into place by a KV shift (0: off); None: --cache-reuse
    id_slot: Int | None = -1
    t_max_predict_ms: float | None = 0.0
    stream: bool | None = False
    timings_per_token: bool | None = False
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    verbose: bool | None = False  # add "__verbose": the native result (with the prompt text) to an OpenAI answer
    return_progress: bool | None = False  # a stream reports prompt_progress while the prompt is read
    backend_sampling: bool | None = False  # llama-server samples on the GPU with it; here sampling is the same
    lora: list[LoraScale] | None = None  # adapter scales for this request; adapters not listed get 0
    # speculative decoding (--spec-type): the most and fewest tokens drafted per step (n_max 0: none for this
    # request); p_min is a draft model's, checked only. llama-server of this version reads none of the three.
    spec_n_max: Int | None = msgspec.field(default=None, name="speculative.n_max")
    spec_n_min: Int | None = msgspec.field(default=None, name="speculative.n_min")
    spec_p_min: float | None = msgspec.field(default=None, name="speculative.p_min")

    def limit(self) -> int | None:
        """The token limit: n_predict, else max_completion_tokens, else max_tokens (llama-server
        reads the name, then its aliases in this order); None if none."""
        for name in ("n_predict", "max_completion_tokens", "max_tokens"):
            v = getattr(self, name)
            if v is not None:
                if v < -1:
                    raise bad_request(f"{name}: must be >= -1, got {v}")
                return v
        return None

    def stops(self) -> tuple[str, ...]:
        s = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(w for w in s if w)

    def structured(self, chat: bool) -> StructuredOutput | None:
        """What the output is constrained to, by llama-server's rules: on the completion routes a
        grammar field, when present, wins over json_schema; a chat request may not have both
        (an empty grammar is none). response_format's schema replaces json_schema."""
        schema, field = self.json_schema, "json_schema"
        rf = self.response_format
        if rf is not None and rf.type == "json_object":
            schema, field = (rf.schema if rf.schema is not None else {}), "response_format"
        elif rf is not None and rf.type == "json_schema":
            wrap = rf.json_schema
            schema, field = (wrap.schema if wrap and wrap.schema is not None else {}), "response_format"
        if chat and schema is not None and self.grammar:
            raise bad_request('grammar: either "json_schema" or "grammar" can be specified, but not both')
        if not chat and self.grammar is not None:
            schema = None  # llama-server reads json_schema only when the request has no grammar field
        if schema is not None:
            return StructuredOutput(schema=schema, field=field)
        return StructuredOutput(grammar=self.grammar) if self.grammar else None


_STRTOL_INT = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")


def logit_bias_pairs(value: Any) -> list[tuple[int | str, float]]:
    """llama-server's logit_bias forms as (token id or text, bias) pairs: [[id_or_text, bias], ...]
    or OpenAI's {"id_or_text": bias} (a key is an id when strtol reads it whole); false is -inf."""
    items = value.items() if isinstance(value, dict) else value
    out = []
    for key, bias in items:
        if isinstance(value, dict) and _STRTOL_INT.fullmatch(key):
            key = int(key)
        if bias is True:
            raise bad_request(f"logit_bias[{key!r}]: the bias must be a number or false, got true")
        out.append((key, -math.inf if bias is False else float(bias)))
    return out


# -- the native routes -------------------------------------------------------------------------------

class PromptObject(Request):
    """A prompt given as an object (llama-server's multimodal form; text only here)."""

    prompt_string: str
    multimodal_data: list[str] | None = None


Prompt = str | list[Any] | PromptObject  # a string, token ids and strings, or several of those


class CompletionRequest(Generation):
    """/completion (/completions)."""

    prompt: Prompt | None = None
    return_tokens: bool | None = False
    response_fields: list[str] | None = None


class InfillChunk(Request):
    filename: str | None = ""
    text: str | None = ""


class InfillRequest(CompletionRequest):
    """/infill: fill in between a prefix and a suffix, with extra files as context."""

    input_prefix: str | None = ""
    input_suffix: str | None = ""
    input_extra: list[InfillChunk] | None = []


class EmbeddingsRequest(Request):
    """/embedding(s) (`content`) and /v1/embeddings (`input`); an input may also be OpenAI's
    content object {"content": [text parts]} (read in embeddings.py)."""

    input: str | list[Any] | dict[str, Any] | None = None
    content: str | list[Any] | dict[str, Any] | None = None
    embd_normalize: Int | None = 2  # -1 none, 0 max-abs, 1 taxicab, 2 Euclidean, p > 2: p-norm
    encoding_format: Literal["float", "base64"] = "float"


class RerankRequest(Request):
    """/rerank: Jina's shape with `documents`, TEI's with `texts`."""

    query: str
    documents: list[str] | None = None
    texts: list[str] | None = None
    top_n: Int | None = None
    return_documents: bool | None = True  # Jina
    return_text: bool | None = False  # TEI


class TokenizeRequest(Request):
    content: str
    add_special: bool | None = False
    parse_special: bool | None = True
    with_pieces: bool | None = False


class DetokenizeRequest(Request):
    tokens: list[int] | None = []


class SlotFileRequest(Request):
    """POST /slots/{id}?action=save|restore: the file under --slot-save-path."""

    filename: str | None = None


class AnyObject(Request):
    """A body that must be a JSON object whose fields are not read (POST /props)."""
