"""Scheduling decisions: which slot takes a task, and what goes into the next batch.

Continuous batching: every generating slot contributes its one decode token to each batch
(decode first, so streams never stall behind a long prompt), and the remaining room is
filled with prompt chunks of the slots still reading their prompts, in slot order.
"""

from __future__ import annotations

import numpy as np

from service.engine.slot import Slot, SlotState, common_prefix
from service.engine.task import Task
from service.model.forward import Batch


def pick_slot(slots: list[Slot], task: Task) -> Slot | None:
    """The idle slot for a task, or None when it has to wait.

    id_slot >= 0 pins the slot. Otherwise the idle slot whose cached tokens share the
    longest prefix with the prompt (cache_prompt), else the least recently used one."""
    p = task.params
    if p.id_slot >= 0:
        s = slots[p.id_slot]
        return None if s.busy else s
    idle = [s for s in slots if not s.busy]
    if not idle:
        return None
    if p.cache_prompt:
        shared, _, _, best = max((common_prefix(s.cache_tokens, p.prompt), -s.last_used, -s.id, s) for s in idle)
        if shared > 0:
            return best
    return min(idle, key=lambda s: s.last_used)


def build_batch(slots: list[Slot], budget: int) -> tuple[Batch, list[tuple[Slot, int, bool]]] | None:
    """One forward batch and, per participating slot in batch order: (slot, n_tokens, wants_logits)."""
    toks: list[int] = []
    seqs: list[int] = []
    pos: list[int] = []
    want: list[bool] = []
    hidden: list[bool] = []
    rows: list[tuple[Slot, int, bool]] = []
    for s in slots:
        if s.state is SlotState.GENERATING and len(toks) < budget:
            toks.append(s.cache_tokens[-1])
            seqs.append(s.id)
            pos.append(len(s.cache_tokens) - 1)
            want.append(True)
            hidden.append(False)
            rows.append((s, 1, True))
    for s in slots:
        room = budget - len(toks)
        if s.state is not SlotState.PROMPT or room <= 0:
            continue
        chunk = s.prompt_chunk(room)
        last = s.i_prompt + len(chunk) == len(s.gen.params.prompt)
        embd = s.gen.params.embd
        last = last and not embd
        p0 = s.i_prompt
        toks.extend(chunk)
        seqs.extend([s.id] * len(chunk))
        pos.extend(range(p0, p0 + len(chunk)))
        want.extend([False] * (len(chunk) - 1) + [last])
        hidden.extend([embd] * len(chunk))
        rows.append((s, len(chunk), last))
    if not toks:
        return None
    batch = Batch(np.array(toks, np.int32), np.array(seqs, np.int32), np.array(pos, np.int32), np.array(want, bool),
                  np.array(hidden, bool) if any(hidden) else None)
    return batch, rows
