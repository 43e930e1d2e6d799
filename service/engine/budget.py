"""The thinking budget (llama-server's --reasoning-budget): a generation may spend at most N
tokens inside its thinking block; then the budget's end (an optional message and the closing tag)
is forced, token by token, in place of what the sampler would draw.

State machine (Phase):

    BEFORE --output starts with the opening tag--> INSIDE --closing tag written--> DONE
       |  (INSIDE from the start when the prompt opened the block)   |
       +--output starts otherwise--> DONE              N tokens spent v
                                                     FORCING --end sent--> DONE
"""

from __future__ import annotations

import enum

from service.engine.task import ThinkingBudget


class Phase(enum.Enum):
    BEFORE = "before"  # no output yet that tells whether a block opens
    INSIDE = "inside"  # thinking; tokens count against the budget
    FORCING = "forcing"  # the budget ran out: its end is being forced
    DONE = "done"  # the block closed, or never opened


class BudgetTracker:
    def __init__(self, b: ThinkingBudget):
        self.b = b
        self.phase = Phase.INSIDE if b.forced_open else Phase.BEFORE
        self.spent = 0
        self._end: list[int] = []

    def forced(self) -> int | None:
        """The token to emit instead of sampling, if the budget forces one now."""
        if self.phase is Phase.INSIDE and self.spent >= self.b.tokens:
            self.phase, self._end = Phase.FORCING, list(self.b.end)
        if self.phase is Phase.FORCING:
            if self._end:
                return self._end.pop(0)
            self.phase = Phase.DONE
        return None

    def seen(self, text: str) -> None:
        """After a token: the generated text so far."""
        if self.phase is Phase.BEFORE:
            head = text.lstrip()
            if head.startswith(self.b.open):
                self.phase = Phase.INSIDE
            elif head and not self.b.open.startswith(head):
                self.phase = Phase.DONE
            return
        if self.phase is Phase.INSIDE:
            if self.b.close in text:
                self.phase = Phase.DONE
            else:
                self.spent += 1
        elif self.phase is Phase.FORCING and not self._end:
            self.phase = Phase.DONE
