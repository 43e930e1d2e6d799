"""Engine events -> llama-server's native JSON shapes (completion results, probabilities,
generation settings). The OpenAI shapes build on these in openai.py."""

from __future__ import annotations

import math

import msgspec
import numpy as np

from service.engine.task import Final, Partial, TaskParams, TokenInfo
from service.sampling import SamplingParams


def f32(x: float) -> float:
    """A float as llama-server prints its float32 settings (0.95 -> 0.949999988079071)."""
    return float(np.float32(x))


def generation_settings(p: TaskParams | None, s: SamplingParams, n_ctx: int, model: str) -> dict:
    n_predict = p.n_predict if p else -1
    return {
        "n_predict": n_predict,
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
        "stop": list(p.stop) if p else [],
        "max_tokens": n_predict,
        "n_keep": 0,
        "n_discard": 0,
        "ignore_eos": s.ignore_eos,
        "stream": p.stream if p else True,
        "logit_bias": [[t, b if math.isfinite(b) else False] for t, b in s.logit_bias],
        "n_probs": s.n_probs,
        "min_keep": s.min_keep,
        "grammar": "",
        "samplers": list(s.samplers),
        "timings_per_token": p.timings_per_token if p else False,
        "post_sampling_probs": p.post_sampling_probs if p else False,
        "lora": [],
        "n_ctx": n_ctx,
        "model": model,
    }


def token_entry(tok, tid: int, value: float, post: bool) -> dict:
    raw = tok.token_to_piece(int(tid), False)
    key = "prob" if post else "logprob"
    v = value if post else (math.log(value) if value > 0 else -math.inf)
    return {"id": int(tid), "token": raw.decode("utf-8", "replace"), "bytes": list(raw),
            key: v if math.isfinite(v) else -9999.0}


def probs_entries(tok, tokens: tuple[TokenInfo, ...], post: bool) -> list[dict]:
    """llama-server's completion_probabilities: one entry per generated token."""
    out = []
    for t in tokens:
        if t.probs is None:
            continue
        e = token_entry(tok, t.id, t.probs.prob, post)
        tops = [token_entry(tok, i, float(p), post) for i, p in zip(t.probs.top_ids, t.probs.top_probs)]
        e["top_probs" if post else "top_logprobs"] = tops
        out.append(e)
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
        d["timings"] = ev.timings.as_dict()
    return d


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
        "generation_settings": generation_settings(p, s, n_ctx, model),
        "prompt": prompt_text,
        "has_new_line": "\n" in ev.content,
        "truncated": ev.truncated,
        "stop_type": ev.stop_type.value,
        "stopping_word": ev.stopping_word,
        "tokens_cached": ev.n_cached,
        "timings": ev.timings.as_dict(),
    }
    if p.n_probs > 0 and not stream:
        d["completion_probabilities"] = probs_entries(tok, ev.tokens, p.post_sampling_probs)
    return d
