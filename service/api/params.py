"""Request JSON -> TaskParams: the one place where client input is checked and typed.

Every problem is an ApiError 400 naming the field; nothing here touches the model beyond
its tokenizer. Field names and defaults are llama-server's.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from service.api.errors import ApiError, bad_request
from service.engine.task import TaskParams
from service.sampling import SamplingParams, dry_breaker_sequences

# SamplingParams fields a request may set directly (logit_bias needs the tokenizer).
_SAMPLING = frozenset(SamplingParams.__struct_fields__) - {"logit_bias"}
# Its integer fields: a JSON number with an integral value (40.0) is read as that integer, as
# llama-server's JSON library does; 40.5 or "40" is a wrong type.
_INTS = frozenset(f.name for f in msgspec.structs.fields(SamplingParams) if f.type is int)


def decode_json(raw: bytes) -> dict:
    try:
        body = msgspec.json.decode(raw) if raw else {}
    except msgspec.DecodeError as e:
        raise bad_request(f"invalid JSON in the request body: {e}") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def get(body: dict, name: str, kind: type | tuple, default: Any = None) -> Any:
    """body[name] checked against kind (bool is not an int; an int is a float). A JSON null
    means the default, as in llama-server."""
    v = body.get(name)
    if v is None or v is default:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if int in kinds and isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool) and bool not in kinds:
        raise bad_request(f"{name}: expected {_kind_names(kinds)}, got {v!r}")
    if not isinstance(v, kinds):
        raise bad_request(f"{name}: expected {_kind_names(kinds)}, got {type(v).__name__}")
    return v


def _kind_names(kinds: tuple) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", list: "an array",
             dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


class ParamBuilder:
    """Turns request bodies into TaskParams for one loaded model and the server's flags."""

    def __init__(self, state):
        self.state = state
        self.model = state.model
        self.tok = state.model.tokenizer
        self.n_vocab = state.model.cfg.n_vocab
        self.n_ctx = state.model.n_ctx
        a = state.args
        self.defaults = {"temperature": a.temp, "top_k": a.top_k, "top_p": a.top_p, "min_p": a.min_p, "seed": a.seed}
        self._grammar = None

    # -- prompts --------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return self.tok.tokenize(text, add_special=add_special, parse_special=True)

    def prompt_tokens(self, prompt: Any, field: str = "prompt") -> list[int]:
        """One prompt: a string, token ids, or a mix; BOS added when it starts with text."""
        if isinstance(prompt, str):
            return self.tokenize(prompt, True)
        if isinstance(prompt, dict) and isinstance(prompt.get("prompt_string"), str):
            return self.tokenize(prompt["prompt_string"], True)
        if not isinstance(prompt, list):
            raise bad_request(f"{field}: expected a string, an array of token ids and strings, or an array of those")
        out: list[int] = []
        for i, part in enumerate(prompt):
            if isinstance(part, str):
                out.extend(self.tokenize(part, i == 0))
            elif isinstance(part, int) and not isinstance(part, bool):
                if not 0 <= part < self.n_vocab:
                    raise bad_request(f"{field}: invalid token id {part} (the vocabulary has {self.n_vocab} tokens)")
                out.append(part)
            else:
                raise bad_request(f"{field}: expected token ids or strings, got {part!r}")
        return out

    def prompts(self, prompt: Any, field: str = "prompt") -> list[list[int]]:
        """One or several prompts, as llama-server splits them."""
        if prompt is None:
            raise bad_request(f'"{field}" is required')
        if isinstance(prompt, list) and prompt and (
            all(isinstance(p, str) for p in prompt) or any(isinstance(p, (list, dict)) for p in prompt)
        ):
            if len(prompt) > 1 or any(isinstance(p, (list, dict)) for p in prompt):
                return [self.prompt_tokens(p, f"{field}[{i}]") for i, p in enumerate(prompt)]
        return [self.prompt_tokens(prompt, field)]

    def check_context(self, tokens: list[int]) -> None:
        if not tokens:
            raise bad_request("the prompt is empty")
        if len(tokens) >= self.n_ctx:
            raise ApiError(
                400, f"request ({len(tokens)} tokens) exceeds the available context size ({self.n_ctx} tokens), "
                     "try increasing it", "exceed_context_size_error", n_prompt_tokens=len(tokens), n_ctx=self.n_ctx)

    # -- sampling and task fields ---------------------------------------------------------------

    def sampling(self, body: dict) -> SamplingParams:
        fields = {k: v for k, v in self.defaults.items() if v is not None}
        fields.update({k: int(v) if k in _INTS and isinstance(v, float) and v.is_integer() else v
                       for k, v in body.items() if k in _SAMPLING and v is not None})
        for k in ("repeat_last_n", "dry_penalty_last_n"):  # a window past the context sees nothing more
            v = fields.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > self.n_ctx:
                fields[k] = self.n_ctx
        if "dry_sequence_breakers" in fields:
            b = fields["dry_sequence_breakers"]
            if not isinstance(b, list) or not b:
                raise bad_request("dry_sequence_breakers: expected a non-empty array of strings")
        if "logit_bias" in body and body["logit_bias"] is not None:
            fields["logit_bias"] = self.logit_bias(body["logit_bias"])
        try:
            return msgspec.convert(fields, SamplingParams)  # strict: "0.5" is not a number
        except (msgspec.ValidationError, ValueError) as e:
            raise bad_request(str(e)) from None

    def logit_bias(self, value: Any) -> tuple:
        from service.sampling.bias import resolve_logit_bias

        try:
            return resolve_logit_bias(value, self.tok, self.n_vocab)
        except ValueError as e:
            raise bad_request(str(e)) from None

    def grammar_compiler(self):
        """The model's llguidance GrammarCompiler, built on first use (~0.3-2.5 s) and shared."""
        from service.sampling import GrammarCompiler

        if self._grammar is None:
            self._grammar = GrammarCompiler(self.tok)
        return self._grammar

    def constraint(self, body: dict, chat: bool | None = None):
        """The request's grammar constraint (llama-server's rules, see service.sampling.structured).

        chat=None: a chat request is one with "messages" (the chat routes require them)."""
        grammar, schema, rf = body.get("grammar"), body.get("json_schema"), body.get("response_format")
        if grammar in (None, "") and schema is None and rf is None:
            return None
        from service.sampling import constraint_from_request

        try:
            return constraint_from_request(self.grammar_compiler(), grammar, schema, rf,
                                           chat="messages" in body if chat is None else chat)
        except ValueError as e:
            raise bad_request(str(e)) from None

    def task(self, body: dict, prompt: list[int], *, n_predict: int | None = None, stream: bool = False,
             n_probs: int | None = None) -> TaskParams:
        self.check_context(prompt)
        s = self.sampling(body)
        if n_predict is None:
            n_predict = get(body, "n_predict", int, -1)
        if n_predict < -1:
            raise bad_request(f"n_predict: must be >= -1, got {n_predict}")
        if n_probs is None:
            n_probs = s.n_probs
        cap = self.state.args.n_probs_max
        if not 0 <= n_probs <= cap:
            raise bad_request(f"n_probs: must be in [0, {cap}], got {n_probs}")
        if n_probs != s.n_probs:
            s = msgspec.structs.replace(s, n_probs=n_probs)
        stop = body.get("stop")
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(w, str) for w in stop):
            raise bad_request("stop: expected a string or an array of strings")
        id_slot = get(body, "id_slot", int, -1)
        if not -1 <= id_slot < self.state.n_slots:
            raise bad_request(f"id_slot: must be -1 or a slot id in [0, {self.state.n_slots}), got {id_slot}")
        t_max = get(body, "t_max_predict_ms", (int, float), 0.0)
        if not math.isfinite(t_max) or t_max < 0:
            raise bad_request(f"t_max_predict_ms: must be >= 0, got {t_max}")
        return TaskParams(
            prompt=tuple(prompt), sampling=s, n_predict=n_predict, stop=tuple(w for w in stop if w),
            n_probs=n_probs, post_sampling_probs=bool(get(body, "post_sampling_probs", bool, False)),
            cache_prompt=bool(get(body, "cache_prompt", bool, True)), id_slot=id_slot,
            t_max_predict_ms=float(t_max), stream=stream,
            timings_per_token=bool(get(body, "timings_per_token", bool, False)),
            constraint=self.constraint(body),
            dry_breakers=self.dry_breakers(s.dry_sequence_breakers) if s.dry_multiplier > 0 else (),
        )

    def dry_breakers(self, breakers: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
        """DRY's breakers as token sequences; a vocabulary scan, so cached per breaker set."""
        cache = self.__dict__.setdefault("_dry_cache", {})
        if breakers not in cache:
            if "_pieces" not in self.__dict__:
                self._pieces = [self.tok.token_to_piece(t, False).decode("utf-8", "replace")
                                for t in range(self.n_vocab)]
            seqs = dry_breaker_sequences(breakers, self._pieces,
                                         lambda t: self.tok.tokenize(t, add_special=False, parse_special=False))
            cache[breakers] = tuple(tuple(q) for q in seqs)
        return cache[breakers]
