"""Engine results as JSON, shaped once for every route: timings, token probabilities (native and
OpenAI), finish reasons, generation settings, the native completion results, and OpenAI's shape of
a parsed chat message and its stream deltas."""

from __future__ import annotations

import math

import msgspec
import numpy as np

from service.chat.chatmsg import ChatMsg, Delta
from service.engine.task import Final, Partial, Progress, StopType, TaskParams, Timings, TokenInfo
from service.sampling import SamplingParams


def f32(x: float) -> float:
    """A float as llama-server prints its float32 settings (0.95 -> 0.949999988079071)."""
    return float(np.float32(x))


def timings_json(t: Timings) -> dict:
    """llama-server's timings: the generation rate counts n - 1 decode steps, the first token coming
    from the prompt's last pass (service.engine.generation)."""
    pn, gn = t.prompt_n, t.predicted_n
    steps = max(gn - 1, 0)
    return {
        "cache_n": t.cache_n,
        "prompt_n": pn,
        "prompt_ms": t.prompt_ms,
        "prompt_per_token_ms": t.prompt_ms / pn if pn else 0.0,
        "prompt_per_second": 1e3 * pn / t.prompt_ms if t.prompt_ms > 0 else 0.0,
        "predicted_n": gn,
        "predicted_ms": t.predicted_ms,
        "predicted_per_token_ms": t.predicted_ms / steps if steps else 0.0,
        "predicted_per_second": 1e3 / t.predicted_ms * steps if t.predicted_ms > 0 else 0.0,
        **({"draft_n": t.draft_n, "draft_n_accepted": t.draft_n_accepted} if t.draft_n > 0 else {}),
    }


def finish_reason(ev: Final, has_calls: bool = False) -> str:
    """OpenAI's finish_reason: length when cut off, tool_calls when the answer calls tools."""
    if ev.stop_type is StopType.LIMIT:
        return "length"
    return "tool_calls" if has_calls else "stop"


def generation_settings(p: TaskParams | None, s: SamplingParams, n_ctx: int, model: str,
                        eog_ids: tuple[int, ...] = (), spec_types: str = "none") -> dict:
    """llama-server's generation_settings (its task_params JSON). ignore_eos shows as a -inf
    (null) bias on every end-of-generation token, as llama-server adds them."""
    n_predict = p.n_predict if p else -1
    bias = list(s.logit_bias) + ([(t, -math.inf) for t in eog_ids] if s.ignore_eos else [])
    return {
        "seed": s.seed,
        "temperature": f32(s.temperature),
        "dynatemp_range": f32(s.dynatemp_range),
        "dynatemp_exponent": f32(s.dynatemp_exponent),
        "top_k": s.top_k,
        "top_p": f32(s.top_p),
        "min_p": f32(s.min_p),
        "top_n_sigma": f32(s.top_n_sigma),
        "xtc_probability": f32(s.xtc_probability),
        "xtc_threshold": f32(s.xtc_threshold),
        "typical_p": f32(s.typical_p),
        "repeat_last_n": s.repeat_last_n,
        "repeat_penalty": f32(s.repeat_penalty),
        "presence_penalty": f32(s.presence_penalty),
        "frequency_penalty": f32(s.frequency_penalty),
        "dry_multiplier": f32(s.dry_multiplier),
        "dry_base": f32(s.dry_base),
        "dry_allowed_length": s.dry_allowed_length,
        "dry_penalty_last_n": n_ctx if s.dry_penalty_last_n == -1 else s.dry_penalty_last_n,
        "dry_sequence_breakers": list(s.dry_sequence_breakers),
        "mirostat": s.mirostat,
        "mirostat_tau": f32(s.mirostat_tau),
        "mirostat_eta": f32(s.mirostat_eta),
        "adaptive_target": f32(-1.0),  # llama.cpp's adaptive-p sampler, which llamajit does not have: off
        "adaptive_decay": f32(0.9),
        "stop": list(p.stop) if p else [],
        "max_tokens": n_predict,
        "n_predict": n_predict,
        "n_keep": getattr(p, "n_keep", 0) if p else 0,
        "n_discard": getattr(p, "n_discard", 0) if p else 0,
        "ignore_eos": s.ignore_eos,
        "stream": p.stream if p else True,
        "logit_bias": [{"bias": b if math.isfinite(b) else None, "token": t} for t, b in bias],
        "n_probs": s.n_probs,
        "min_keep": s.min_keep,
        "grammar": "",
        "grammar_lazy": False,
        "grammar_triggers": [],
        "preserved_tokens": [],
        "chat_format": "Content-only",
        "reasoning_format": "auto",
        "reasoning_in_content": False,
        "generation_prompt": "",
        "samplers": list(s.samplers),
        "speculative.types": p.spec_types if p else spec_types,
        "timings_per_token": p.timings_per_token if p else False,
        "post_sampling_probs": p.post_sampling_probs if p else False,
        "backend_sampling": False,
        "lora": [{"id": i, "scale": f32(v)} for i, v in enumerate(p.lora)] if p and p.lora is not None else [],
        "n_ctx": n_ctx,
        "model": model,
    }


def token_entry(tok, tid: int, value: float, post: bool) -> dict:
    raw = tok.token_to_piece(int(tid), False)
    key = "prob" if post else "logprob"
    v = value if post else (math.log(value) if value > 0 else -math.inf)
    return {"id": int(tid), "token": raw.decode("utf-8", "replace"), "bytes": list(raw),
            key: v if math.isfinite(v) else -9999.0}


def probs_entries(tok, tokens: tuple[TokenInfo, ...], post: bool, top: int | None = None) -> list[dict]:
    """llama-server's completion_probabilities: one entry per generated token with its `top` (all
    when None) most likely alternatives; post-sampling probabilities or log-probabilities."""
    out = []
    for t in tokens:
        if t.probs is None:
            continue
        e = token_entry(tok, t.id, t.probs.prob, post)
        pairs = list(zip(t.probs.top_ids, t.probs.top_probs))[:top]
        e["top_probs" if post else "top_logprobs"] = [token_entry(tok, i, float(p), post) for i, p in pairs]
        out.append(e)
    return out


def oai_logprobs(tok, tokens: tuple[TokenInfo, ...], k: int) -> dict:
    """OpenAI's logprobs object: the same entries, k alternatives each."""
    return {"content": probs_entries(tok, tokens, False, k)}


def usage(finals: list[Final]) -> dict:
    prompt = finals[0].n_prompt if finals else 0
    done = sum(f.n_predicted for f in finals)
    return {"completion_tokens": done, "prompt_tokens": prompt, "total_tokens": prompt + done,
            "prompt_tokens_details": {"cached_tokens": finals[0].n_cached if finals else 0}}


def message_json(msg: ChatMsg) -> dict:
    """An assistant message in OpenAI's shape (content null when it only calls tools)."""
    out: dict = {"role": "assistant", "content": None if not msg.content and msg.tool_calls else msg.content}
    if msg.reasoning_content:
        out["reasoning_content"] = msg.reasoning_content
    if msg.tool_calls:
        out["tool_calls"] = [{"type": "function", "function": {"name": t.name, "arguments": t.arguments},
                              "id": t.id} for t in msg.tool_calls]
    return out


def delta_json(d: Delta) -> dict:
    """A stream delta in OpenAI's shape: a call's index always, its id, type and name once."""
    out: dict = {}
    if d.reasoning:
        out["reasoning_content"] = d.reasoning
    if d.content:
        out["content"] = d.content
    if d.tool_index >= 0:
        call: dict = {"index": d.tool_index}
        if d.tool_id:
            call["id"] = d.tool_id
            call["type"] = "function"
        fn: dict = {"name": d.tool_name} if d.tool_name else {}
        fn["arguments"] = d.tool_args
        call["function"] = fn
        out["tool_calls"] = [call]
    return out


def native_partial(ev: Partial, p: TaskParams, tok, index: int, id_slot: int, n_prompt: int,
                   n_predicted: int) -> dict:
    d = {
        "index": index,
        "content": ev.content,
        "tokens": [t.id for t in ev.tokens],
        "stop": False,
        "id_slot": id_slot,
        "tokens_predicted": n_predicted,
        "tokens_evaluated": n_prompt,
    }
    if p.n_probs > 0:
        d["completion_probabilities"] = probs_entries(tok, ev.tokens, p.post_sampling_probs)
    if ev.timings is not None:
        d["timings"] = timings_json(ev.timings)
    if ev.progress is not None:  # return_progress
        d["prompt_progress"] = progress_json(ev.progress)
    return d


def progress_json(g: Progress) -> dict:
    return {"total": g.total, "cache": g.cache, "processed": g.processed, "time_ms": g.time_ms}


def step_extras(ev: Partial) -> dict:
    """What a streamed step adds to the last chunk it sends: its timings (timings_per_token) and
    the prompt's progress (return_progress)."""
    out = {}
    if ev.timings is not None:
        out["timings"] = timings_json(ev.timings)
    if ev.progress is not None:
        out["prompt_progress"] = progress_json(ev.progress)
    return out


def native_final(ev: Final, p: TaskParams, tok, index: int, model: str, n_ctx: int, *, stream: bool,
                 return_tokens: bool, prompt_text: str) -> dict:
    s = p.sampling
    if s.seed_is_random:  # report the seed the sampler drew
        s = msgspec.structs.replace(s, seed=ev.seed)
    d = {
        "index": index,
        "content": ev.unsent if stream else ev.content,
        "tokens": [t.id for t in ev.tokens] if (return_tokens and not stream) else [],
        "id_slot": ev.id_slot,
        "stop": True,
        "model": model,
        "tokens_predicted": ev.n_predicted,
        "tokens_evaluated": ev.n_prompt,
        "generation_settings": generation_settings(p, s, n_ctx, model, tok.eog_ids),
        "prompt": prompt_text,
        "has_new_line": "\n" in ev.content,
        "truncated": ev.truncated,
        "stop_type": ev.stop_type.value,
        "stopping_word": ev.stopping_word,
        "tokens_cached": ev.n_cached,
        "timings": timings_json(ev.timings),
    }
    if p.n_probs > 0 and not stream:
        d["completion_probabilities"] = probs_entries(tok, ev.tokens, p.post_sampling_probs)
    return d
