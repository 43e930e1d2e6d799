"""Scheduling decisions: which slot takes a task, and what goes into the next batch.

Continuous batching (-cb, the default): every generating slot contributes its one decode token
to each batch (decode first, so streams never stall behind a long prompt), and the remaining
room is filled with prompt chunks of the slots still reading their prompts, in slot order.
Without it (-nocb), as llama-server, prompts are only evaluated in a batch that holds no decode
token: a new prompt waits until every generation in progress has ended. Under speculative
decoding a decode token brings its slot's draft (Slot.draft) right after it, within the room
the batch leaves once every generating slot has its own token.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from service.engine.slot import Slot, SlotState, common_prefix
from service.engine.task import Task
from service.model.forward import Batch


def pick_slot(slots: list[Slot], task: Task, similarity: float) -> tuple[Slot | None, bool]:
    """(the slot for a task or None when it has to wait, whether to update the prompt cache on
    the way in), as llama-server's get_available_slot:

    - id_slot >= 0 pins the slot (busy: wait);
    - with a similarity threshold (-sps, 0 = off), the idle slot whose cached tokens share the
      largest fraction of the prompt, above the threshold; the prompt cache is updated when
      that keeps less than half of the slot's tokens;
    - else the least recently used idle slot (the last of equals, as llama-server's scan), and
      the prompt cache is updated."""
    p = task.params
    chosen = None
    if p.id_slot >= 0:
        chosen = slots[p.id_slot]
        if chosen.busy:
            return None, False
    if similarity != 0:
        best, found = 0.0, None
        for s in slots:
            if s.busy or not s.cache_tokens or (p.id_slot >= 0 and s.id != p.id_slot):
                continue
            f = common_prefix(s.cache_tokens, p.prompt) / len(p.prompt)
            if f > best and f > similarity:
                best, found = f, s
        if found is not None:
            return found, best * len(p.prompt) / len(found.cache_tokens) < 0.5
    if chosen is not None:
        return chosen, False
    idle = [s for s in slots if not s.busy]
    if not idle:
        return None, False
    return min(reversed(idle), key=lambda s: s.last_used), True


def build_batch(slots: list[Slot], budget: int, cont_batching: bool = True,
                drafter: Callable[[Slot, int], list[int]] | None = None
                ) -> tuple[Batch, list[tuple[Slot, int, bool]]] | None:
    """One forward batch of at most `budget` tokens and, per participating slot in batch order:
    (slot, n_tokens, wants_logits). drafter(slot, room): a generating slot's draft of at most
    room tokens (None: no speculation); a drafted slot wants logits at each of its tokens."""
    toks: list[int] = []
    seqs: list[int] = []
    pos: list[int] = []
    want: list[bool] = []
    hidden: list[bool] = []
    alone: list[bool] = []  # a drafted slot's tokens attend one at a time (Batch.alone)
    lora: list[tuple[float, ...]] = []  # each token's LoRA scales (its slot's task's)
    mpos: list[int] = []  # each token's attention-mask position (an image row: its image's last)
    images: list[tuple[int, np.ndarray]] = []  # (batch row, float32 (n, n_embd) rows) of image rows
    rows: list[tuple[Slot, int, bool]] = []
    for s in slots:
        s.draft = []
    decoding = [s for s in slots if s.state is SlotState.GENERATING]
    for i, s in enumerate(decoding):
        if len(toks) >= budget:
            break
        if drafter is not None:  # room: what is left once this slot and the ones after it have their token
            s.draft = drafter(s, budget - len(toks) - (len(decoding) - i))
        fed = [s.cache_tokens[-1], *s.draft]
        p0 = len(s.cache_tokens) - 1
        toks.extend(fed)
        seqs.extend([s.id] * len(fed))
        pos.extend(range(p0, p0 + len(fed)))
        mpos.extend(range(p0, p0 + len(fed)))
        want.extend([True] * len(fed))
        hidden.extend([False] * len(fed))
        alone.extend([bool(s.draft)] * len(fed))
        lora.extend([s.gen.lora] * len(fed))
        rows.append((s, len(fed), True))
    prompts = cont_batching or not toks
    for s in slots:
        room = budget - len(toks)
        if not prompts or s.state is not SlotState.PROMPT or room <= 0:
            continue
        chunk = s.prompt_chunk(room)
        if not chunk:  # an image that does not fit the room left: next batch
            continue
        last = s.i_prompt + len(chunk) == len(s.gen.params.prompt)
        embd = s.gen.params.embd
        last = last and not embd
        p0 = s.i_prompt
        row0 = len(toks)
        toks.extend(chunk)
        seqs.extend([s.id] * len(chunk))
        pos.extend(range(p0, p0 + len(chunk)))
        mpos.extend(range(p0, p0 + len(chunk)))
        for im in s.gen.params.images:  # image rows: no token; non-causal within the image unless causal
            a, b = max(im.pos, p0), im.pos + len(im.embd)
            if a < b <= p0 + len(chunk):
                images.append((row0 + a - p0, im.embd[a - im.pos :]))
                toks[row0 + a - p0 : row0 + b - p0] = [0] * (b - a)
                if im.non_causal:
                    mpos[row0 + a - p0 : row0 + b - p0] = [b - 1] * (b - a)
        want.extend([False] * (len(chunk) - 1) + [last])
        hidden.extend([embd] * len(chunk))
        alone.extend([False] * len(chunk))
        lora.extend([s.gen.lora] * len(chunk))
        rows.append((s, len(chunk), last))
    if not toks:
        return None
    batch = Batch(np.array(toks, np.int32), np.array(seqs, np.int32), np.array(pos, np.int32), np.array(want, bool),
                  np.array(hidden, bool) if any(hidden) else None,
                  np.array(lora, np.float32) if lora and lora[0] else None)
    if any(alone):
        batch.alone = np.array(alone, bool)
    if images:
        batch.embd = np.zeros((len(toks), images[0][1].shape[1]), np.float32)
        batch.embd_mask = np.zeros(len(toks), bool)
        for r, e in images:
            batch.embd[r : r + len(e)] = e
            batch.embd_mask[r : r + len(e)] = True
        batch.attn_pos = np.array(mpos, np.int32)
    return batch, rows
