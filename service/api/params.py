"""Typed requests (protocol.py) -> TaskParams for the loaded model and the server's flags.

What needs the model is checked here: prompts against the vocabulary and the context, logit_bias
and DRY breakers through the tokenizer, grammars and schemas through the model's compiler. Every
problem is an ApiError 400 naming the field.

    b = builder(request)                      # one per app, built on first use
    params = b.task(req, b.prompts(req.prompt)[0])
    runs = Runs(engine, copies(params, n))    # n choices
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any

import msgspec
from litestar import Request

from service.api.errors import ApiError, bad_request
from service.api.media import multimodal_data
from service.api.protocol import SAMPLING_NAMES, Generation, PromptObject, convert, logit_bias_pairs
from service.engine.task import TaskParams
from service.sampling import SamplingParams, StructuredOutput, compile_structured, dry_breaker_sequences
from service.sampling.bias import resolve_logit_bias
from service.vision.media import MediaError

_UINT32 = 0xFFFFFFFF


def builder(request: Request) -> ParamBuilder:
    """The app's ParamBuilder. Every handler that builds from a request needs the model, so this
    wakes a sleeping server (ServerState.model), as llama-server does for them (token counting
    included); the builder itself keeps the tokenizer, which stays loaded while asleep."""
    request.app.state.server.model  # noqa: B018 (the property's side effect: power.want())
    b = request.app.state.get("params")
    if b is None:
        b = request.app.state.params = ParamBuilder(request.app.state.server)
    return b


def copies(p: TaskParams, n: int) -> list[TaskParams]:
    """The tasks of n choices: as llama-server's child tasks, the i-th copy draws with seed + i
    when the seed is fixed (identical choices otherwise) and leaves the slot to the engine."""
    out = [p]
    for i in range(1, n):
        s = p.sampling
        if not s.seed_is_random:
            s = msgspec.structs.replace(s, seed=(s.seed + i) & _UINT32)
        out.append(dataclasses.replace(p, sampling=s, id_slot=-1))
    return out


class ParamBuilder:
    """Turns requests into TaskParams for one loaded model and the server's flags."""

    def __init__(self, state):
        self.state = state
        self.model = state.model
        self.tok = state.model.tokenizer
        self.n_vocab = state.model.cfg.n_vocab
        self.n_ctx = state.model.n_ctx
        a = state.args
        # the server-wide sampling flags; a request's own fields override them (see sampling())
        self.defaults = msgspec.structs.asdict(a.sampling_defaults(n_vocab=self.n_vocab, n_ctx=self.n_ctx))
        self.default_structured = a.default_structured()  # --grammar / --json-schema, for requests without one
        self._grammar = None
        self._dry: dict[tuple[str, ...], tuple[tuple[int, ...], ...]] = {}
        self._pieces: list[str] | None = None

    # -- prompts --------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return self.tok.tokenize(text, add_special=add_special, parse_special=True)

    def prompt_tokens(self, prompt: Any, field: str = "prompt") -> list[int]:
        """One prompt: a string, token ids, or a mix; BOS added when it starts with text."""
        if isinstance(prompt, dict):  # a prompt object inside an array
            prompt = convert(prompt, PromptObject, field)
        if isinstance(prompt, PromptObject):
            if prompt.multimodal_data is not None:
                return self.media_prompt(prompt.prompt_string, multimodal_data(prompt.multimodal_data, self.state.media))
            return self.tokenize(prompt.prompt_string, True)
        if isinstance(prompt, str):
            return self.tokenize(prompt, True)
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

    def media_prompt(self, text: str, images: list[bytes]) -> list[int]:
        """A prompt whose media markers take these images (service.vision.media.MediaPrompt)."""
        try:
            return self.state.media.prompt(text, images, add_bos=self.tok.add_bos)
        except MediaError as e:
            raise bad_request(str(e)) from None

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

    async def prompts_off_loop(self, prompt: Any, field: str = "prompt") -> list[list[int]]:
        """prompts(), on a worker thread when it has images to encode, so the event loop serves on."""
        items = prompt if isinstance(prompt, list) else [prompt]
        if self.state.media is not None and any(
                getattr(p, "multimodal_data", None) or (isinstance(p, dict) and p.get("multimodal_data"))
                for p in items):
            return await asyncio.to_thread(self.prompts, prompt, field)
        return self.prompts(prompt, field)

    def check_context(self, tokens: list[int], media_ok: bool = False) -> None:
        """media_ok: the caller hands the prompt's images (MediaPrompt.images) to its task."""
        if not tokens:
            raise bad_request("the prompt is empty")
        if min(tokens) < 0 and not (media_ok and getattr(tokens, "images", ())):
            raise bad_request("multimodal data is not supported on this route (use /completion or the chat routes)")
        if len(tokens) >= self.n_ctx:
            raise ApiError(
                400, f"request ({len(tokens)} tokens) exceeds the available context size ({self.n_ctx} tokens), "
                     "try increasing it", "exceed_context_size_error", n_prompt_tokens=len(tokens), n_ctx=self.n_ctx)

    # -- sampling and task fields ---------------------------------------------------------------

    def sampling(self, req: Any) -> SamplingParams:
        """The server's defaults overridden by the request's sampling fields (SamplingFields)."""
        given = {k: v for k in SAMPLING_NAMES if (v := getattr(req, k)) is not None}
        for k in ("repeat_last_n", "dry_penalty_last_n"):  # a window past the context sees nothing more
            if given.get(k, 0) > self.n_ctx:
                given[k] = self.n_ctx
        if given.get("dry_sequence_breakers") == []:
            raise bad_request("dry_sequence_breakers: expected a non-empty array of strings")
        if "logit_bias" in given:
            try:
                given["logit_bias"] = resolve_logit_bias(logit_bias_pairs(given["logit_bias"]), self.tok, self.n_vocab)
            except ValueError as e:
                raise bad_request(str(e)) from None
        try:
            return SamplingParams(**{**self.defaults, **given})
        except ValueError as e:
            raise bad_request(str(e)) from None

    def grammar_compiler(self):
        """The model's llguidance GrammarCompiler, built on first use (~0.3-2.5 s) and shared."""
        from service.sampling import GrammarCompiler

        if self._grammar is None:
            self._grammar = GrammarCompiler(self.tok)
        return self._grammar

    def constraint(self, s: StructuredOutput | None):
        if s is None:
            return None
        try:
            return compile_structured(self.grammar_compiler(), s)
        except ValueError as e:
            raise bad_request(str(e)) from None

    def task(self, req: Generation, prompt: list[int], *, n_predict: int | None = None, n_probs: int | None = None,
             chat: bool = False, constraint: Any = None, extra_stops: tuple[str, ...] = ()) -> TaskParams:
        """The task for one prompt. n_predict and n_probs, when given, replace the request's own
        (the OpenAI routes read max_tokens and logprobs); a constraint, when given, replaces the
        one the request asks for (a chat's tool-call grammar)."""
        self.check_context(prompt, media_ok=True)
        s = self.sampling(req)
        if n_predict is None:
            n_predict = req.limit()
        if n_predict is None:
            n_predict = -1
        if n_predict < -1:
            raise bad_request(f"n_predict: must be >= -1, got {n_predict}")
        if n_probs is None:
            n_probs = s.n_probs
        cap = self.state.args.n_probs_max
        if not 0 <= n_probs <= cap:
            raise bad_request(f"n_probs: must be in [0, {cap}], got {n_probs}")
        if n_probs != s.n_probs:
            s = msgspec.structs.replace(s, n_probs=n_probs)
        if not -1 <= req.id_slot < self.state.n_slots:
            raise bad_request(f"id_slot: must be -1 or a slot id in [0, {self.state.n_slots}), got {req.id_slot}")
        if not math.isfinite(req.t_max_predict_ms) or req.t_max_predict_ms < 0:
            raise bad_request(f"t_max_predict_ms: must be >= 0, got {req.t_max_predict_ms}")
        a = self.state.args
        n_keep = req.n_keep if req.n_keep is not None else a.keep
        if n_keep < -1:
            raise bad_request(f"n_keep: must be >= -1, got {n_keep}")
        if req.n_discard < 0:
            raise bad_request(f"n_discard: must be >= 0, got {req.n_discard}")
        n_cache_reuse = req.n_cache_reuse if req.n_cache_reuse is not None else a.cache_reuse
        if n_cache_reuse < 0:
            raise bad_request(f"n_cache_reuse: must be >= 0, got {n_cache_reuse}")
        stop = req.stops()
        for name, v in (("n_max", req.spec_n_max), ("n_min", req.spec_n_min)):
            if v is not None and v < 0:
                raise bad_request(f"speculative.{name}: must be >= 0, got {v}")
        if req.spec_p_min is not None and not 0 <= req.spec_p_min <= 1:
            raise bad_request(f"speculative.p_min: must be in [0, 1], got {req.spec_p_min}")
        images = getattr(prompt, "images", ())
        if images and len(images[0].embd) > min(a.batch_size, a.ubatch_size):
            raise bad_request(f"an image takes {len(images[0].embd)} tokens, more than the batch size "
                              f"({min(a.batch_size, a.ubatch_size)}): raise -b/-ub")
        return TaskParams(
            images=images,
            lora=self.lora(req.lora),
            prompt=tuple(prompt), sampling=s, n_predict=n_predict, stop=stop + tuple(w for w in extra_stops if w not in stop),
            n_probs=n_probs, post_sampling_probs=req.post_sampling_probs,
            cache_prompt=req.cache_prompt if req.cache_prompt is not None else a.cache_prompt,
            n_keep=n_keep, n_discard=req.n_discard, n_cache_reuse=n_cache_reuse, return_progress=req.return_progress,
            id_slot=req.id_slot, t_max_predict_ms=float(req.t_max_predict_ms), stream=req.stream,
            timings_per_token=req.timings_per_token,
            constraint=constraint if constraint is not None else self.constraint(
                req.structured(chat) or self.default_structured),
            dry_breakers=self.dry_breakers(s.dry_sequence_breakers) if s.dry_multiplier > 0 else (),
            spec_types=",".join(a.spec_type), spec_n_max=-1 if req.spec_n_max is None else req.spec_n_max,
            spec_n_min=req.spec_n_min or 0,
        )

    def lora(self, entries) -> tuple[float, ...] | None:
        """A request's `lora` as a scale per loaded adapter (those not listed: 0, as llama-server);
        None (not given, or empty): the server-wide scales when the task starts."""
        if not entries:
            return None
        n = self.state.loaded_model.adapters.n
        scales = [0.0] * n
        for e in entries:
            if not 0 <= e.id < n:
                raise bad_request(f"lora: no adapter with id {e.id} (this server has {n}: GET /lora-adapters)")
            if not math.isfinite(e.scale):
                raise bad_request(f"lora: the scale of adapter {e.id} must be a finite number")
            scales[e.id] = float(e.scale)
        return tuple(scales)

    def dry_breakers(self, breakers: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
        """DRY's breakers as token sequences; a vocabulary scan, so cached per breaker set."""
        if breakers not in self._dry:
            if self._pieces is None:
                self._pieces = [self.tok.token_to_piece(t, False).decode("utf-8", "replace")
                                for t in range(self.n_vocab)]
            seqs = dry_breaker_sequences(breakers, self._pieces,
                                         lambda t: self.tok.tokenize(t, add_special=False, parse_special=False))
            self._dry[breakers] = tuple(tuple(q) for q in seqs)
        return self._dry[breakers]
