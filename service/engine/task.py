"""What the server hands the engine: its flags (EngineConfig) and tasks (TaskParams); and what the
engine sends back (events).

A Task is one generation: one prompt, already tokenized and validated. The HTTP layer turns
JSON into TaskParams; nothing below this line sees JSON. Events flow back through a sink the
task carries (a callable the engine thread calls; the HTTP side bridges it into asyncio).
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.engine.speculative import SpecConfig
from service.sampling import SamplingParams, TokenProbs


class StopType(enum.Enum):
    """Why a generation ended: llama-server's stop_type values."""

    NONE = "none"  # still running (streamed partial results)
    EOS = "eos"  # an end-of-generation token
    LIMIT = "limit"  # n_predict, t_max_predict_ms, or the end of the context
    WORD = "word"  # one of the request's stop strings


@dataclass(frozen=True)
class EngineConfig:
    """The server flags the engine loop obeys (service.api.state builds it from ServerArgs)."""

    n_slots: int = 1
    n_predict_default: int = -1  # -n: the n_predict of a request that sets none (-1: no limit)
    ctx_shift: bool = False  # --context-shift
    cont_batching: bool = True  # -cb / -nocb
    similarity: float = 0.1  # -sps (0: pick slots by LRU only)
    pool: int = 0  # unified KV (-kvu): tokens all slots share; 0: each slot its own n_ctx
    cache_ram_mib: int = 0  # --cache-ram (0: no RAM prompt cache, -1: no size limit)
    cache_idle_slots: bool = False  # --cache-idle-slots
    cache_reuse_ok: bool = True  # n_cache_reuse may shift chunks (False with multimodal, as in llama-server)
    sleep_idle_seconds: float = -1  # --sleep-idle-seconds (-1: never)
    threads: int = 0  # -t: Numba threads for one-token batches (decode); 0: leave Numba's count alone
    threads_batch: int = 0  # -tb: Numba threads for larger batches (prompts); 0: as for decode
    t_start: float | None = None  # process start (Unix seconds) for /metrics
    max_queue: int = 0  # --max-queue: tasks that may wait beyond the slots (0: no bound)
    spec: SpecConfig = field(default_factory=SpecConfig)  # --spec-type and its sizes (default: none)
    draft: object = None  # service.engine.draft.DraftModel with -md and --spec-type draft-simple


@dataclass(frozen=True)
class ThinkingBudget:
    """--reasoning-budget / reasoning_budget_tokens: at most `tokens` tokens inside the thinking
    block; then `end` (the budget message and the closing tag, as tokens) is forced."""

    tokens: int  # 0: close the block at once
    open: str  # the block's tags as text, to follow the output
    close: str
    forced_open: bool  # the prompt opened the block: the output starts inside it
    end: tuple[int, ...]


@dataclass(frozen=True)
class TaskParams:
    prompt: tuple[int, ...]  # token ids, BOS included when the edge added it
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n_predict: int = -1  # -1: until EOS or the context end
    stop: tuple[str, ...] = ()
    n_probs: int = 0  # > 0: report the top n_probs for each generated token
    post_sampling_probs: bool = False
    cache_prompt: bool = True
    id_slot: int = -1  # -1: the engine chooses
    t_max_predict_ms: float = 0.0  # > 0: stop after this long once a newline was produced
    stream: bool = False
    timings_per_token: bool = False
    constraint: Any = None  # a compiled grammar (service.sampling.grammar.Constraint); the engine clones it per task
    dry_breakers: tuple[tuple[int, ...], ...] = ()  # DRY's breakers as token sequences
    embd: bool = False  # an embedding task: evaluate the prompt, return its hidden states, generate nothing
    n_keep: int = 0  # context shift: prompt tokens kept at the start (-1: the whole prompt)
    n_discard: int = 0  # context shift: tokens dropped after them (0: half of the rest)
    n_cache_reuse: int = 0  # --cache-reuse: least chunk of the cache moved into place by a KV shift (0: off)
    return_progress: bool = False  # a stream also gets prompt-progress events
    thinking_budget: ThinkingBudget | None = None
    lora: tuple[float, ...] | None = None  # each LoRA adapter's scale for this task (None: the server-wide scales)
    # multimodal prompts: service.vision.media.ImageChunk of each image (first prompt position, float32 rows
    # (n, n_embd) used in place of token embeddings); the prompt holds placeholder ids < 0 at those positions
    images: tuple = ()
    spec_types: str = "none"  # the server's --spec-type, as the task's settings show it
    spec_n_max: int = -1  # request speculative.n_max: the most tokens drafted per step (-1: no cap; 0: none)
    spec_n_min: int = 0  # request speculative.n_min: a shorter draft is not used


@dataclass(frozen=True)
class Timings:
    """Where a generation's time went (the HTTP layer derives the per-token rates it reports)."""

    cache_n: int  # prompt tokens reused from the cache
    prompt_n: int  # prompt tokens evaluated
    prompt_ms: float
    predicted_n: int
    predicted_ms: float
    draft_n: int = 0  # speculative decoding: tokens drafted
    draft_n_accepted: int = 0  # ... and accepted


@dataclass(frozen=True)
class TokenInfo:
    """One generated token with the probabilities the request asked for."""

    id: int
    probs: TokenProbs | None  # None unless n_probs > 0


@dataclass(frozen=True)
class Progress:
    """How far a prompt is (llama-server's prompt_progress): tokens in all, reused from the cache,
    in the cache now, and milliseconds since the task started."""

    total: int
    cache: int
    processed: int
    time_ms: int


@dataclass(frozen=True)
class Partial:
    """A streamed step: text that is safe to show (no partial stop string) and its tokens; or,
    with `progress`, a prompt-progress event (no text, no tokens)."""

    content: str
    tokens: tuple[TokenInfo, ...]
    timings: Timings | None = None
    id_slot: int = -1
    progress: Progress | None = None


@dataclass(frozen=True)
class Final:
    content: str  # the whole generated text, stop string excluded
    tokens: tuple[TokenInfo, ...]
    stop_type: StopType
    stopping_word: str
    truncated: bool
    n_prompt: int  # prompt tokens (evaluated + cached)
    n_cached: int
    n_predicted: int
    timings: Timings
    id_slot: int
    seed: int
    unsent: str = ""  # text not yet sent in a stream (held back for a possible stop string)


@dataclass(frozen=True)
class Embedding:
    hidden: object  # float32 (n_prompt, n_embd): final-norm hidden state of every prompt token
    n_prompt: int


class ErrorKind(enum.Enum):
    """Why a task failed; service.api.errors maps each kind to a status code and error type."""

    INVALID_REQUEST = "invalid_request"  # the task cannot run as given
    EXCEED_CONTEXT = "exceed_context"  # the prompt does not fit the slot's context
    INTERNAL = "internal"  # a bug in the engine: the task failed, the engine serves on
    UNAVAILABLE = "unavailable"  # the server is shutting down (drain deadline): the task cannot run


@dataclass(frozen=True)
class Failure:
    kind: ErrorKind
    message: str


Event = Partial | Final | Embedding | Failure


class QueueFull(Exception):
    """Engine.submit refused a request: its tasks would not fit the slots and --max-queue."""

_ids = itertools.count()


class Task:
    """One queued generation. The engine thread calls `sink(event)`; `cancel()` is thread-safe."""

    def __init__(self, params: TaskParams, sink: Callable[[Event], None]):
        self.id = next(_ids)
        self.params = params
        self.sink = sink
        self.t_created = time.perf_counter()  # handed to the engine: the latency metrics' clock starts
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()
