"""Reading one streamed response as it arrives, with the client's clock on each event.

Three framings, all llama-server's: the native /completion stream (`data: {"content": ..}`
events, the last with `"stop": true` and `tokens_predicted`), and the OpenAI chat and text
completion streams (`choices[0].delta.content` / `choices[0].text`, a `finish_reason` on
the last choice chunk, a usage chunk when asked for, `data: [DONE]` at the end). Errors come
as an `error: {...}` event or a `data: {"error": ...}` one.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass


class Framing(enum.Enum):
    """Which stream a request reads: decides where the text and the token count are."""

    NATIVE = "native"   # POST /completion
    CHAT = "chat"       # POST /v1/chat/completions
    TEXT = "text"       # POST /v1/completions


@dataclass
class StreamTiming:
    """Client-side times (perf_counter seconds) and counts of one stream."""

    t0: float                   # just before the request was sent
    t_first: float | None = None  # first event that carried text
    t_end: float | None = None    # the final event (stop / finish_reason), else the last text
    text_events: int = 0
    tokens: int | None = None     # the server's count (tokens_predicted, usage, timings)
    finished: bool = False        # a final event arrived (and [DONE] for the OpenAI framings)
    error: str | None = None
    text: str = ""

    @property
    def n_tokens(self) -> int:
        """Generated tokens: the server's count when it gave one, else the text events."""
        return self.tokens if self.tokens is not None else self.text_events

    @property
    def ttft_ms(self) -> float | None:
        return None if self.t_first is None else (self.t_first - self.t0) * 1e3

    @property
    def e2e_ms(self) -> float:
        return ((self.t_end or time.perf_counter()) - self.t0) * 1e3

    @property
    def itl_ms(self) -> float | None:
        """Mean gap between tokens after the first; None below two tokens."""
        if self.t_first is None or self.t_end is None or self.n_tokens < 2:
            return None
        return (self.t_end - self.t_first) * 1e3 / (self.n_tokens - 1)

    @property
    def tokens_per_s(self) -> float | None:
        """Generated tokens over the whole request, as the user waiting for it sees them."""
        return self.n_tokens / (self.e2e_ms / 1e3) if self.n_tokens and self.e2e_ms > 0 else None


def _piece(framing: Framing, ev: dict) -> tuple[str, bool]:
    """(text carried, is the final event) of one decoded event."""
    if framing is Framing.NATIVE:
        return ev.get("content") or "", bool(ev.get("stop"))
    choices = ev.get("choices") or []
    if not choices:
        return "", False
    c = choices[0]
    text = (c.get("delta") or {}).get("content") if framing is Framing.CHAT else c.get("text")
    return text or "", c.get("finish_reason") is not None


def _count(framing: Framing, ev: dict) -> int | None:
    if framing is Framing.NATIVE and "tokens_predicted" in ev:
        return int(ev["tokens_predicted"])
    usage = ev.get("usage")
    if isinstance(usage, dict) and "completion_tokens" in usage:
        return int(usage["completion_tokens"])
    timings = ev.get("timings")
    if isinstance(timings, dict) and "predicted_n" in timings:
        return int(timings["predicted_n"])
    return None


def read_stream(lines, framing: Framing, t0: float) -> StreamTiming:
    """Consume `lines` (decoded SSE lines, e.g. requests' iter_lines) into a StreamTiming."""
    st = StreamTiming(t0=t0)
    final_seen = False
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        now = time.perf_counter()
        field, _, value = line.partition(":")
        value = value.strip()
        if field == "error":
            st.error = value or "error event"
            break
        if field != "data" or not value:
            continue
        if value == "[DONE]":
            st.finished = final_seen
            break
        try:
            ev = json.loads(value)
        except ValueError:
            st.error = f"undecodable event: {value[:80]!r}"
            break
        if "error" in ev:
            st.error = json.dumps(ev["error"])[:200]
            break
        text, final = _piece(framing, ev)
        if text:
            st.text += text
            st.text_events += 1
            st.t_first = st.t_first or now
            st.t_end = now
        n = _count(framing, ev)
        if n is not None:
            st.tokens = n
        if final:
            final_seen = True
            st.t_end = now
            if framing is Framing.NATIVE:
                st.finished = True
                break
    if not st.finished and st.error is None:
        st.error = "stream ended before its final event"
    return st
