"""The assistant message parsed from model output, and the deltas a stream sends of it.

    msg = ChatMsg(content="", reasoning_content="", tool_calls=[ToolCall("get_weather", '{"city":"Paris"}')])

(service.api.result_json gives them OpenAI's JSON shape.)

A stream re-parses the whole output after every step (the parse of a prefix is a best effort:
what is certain so far). `StreamTracker` remembers what was sent and turns each new parse into
deltas that only ever append, the shape llama-server streams (llama.cpp's common_chat_msg_diff):
reasoning first, then content, then per tool call its name and id once, then argument pieces.
A later parse that no longer extends what was sent (a partial parse guessed wrong) sends
nothing for that part rather than contradict it.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field

_ALNUM = string.digits + string.ascii_uppercase + string.ascii_lowercase


def new_call_id() -> str:
    """A tool call id as llama-server makes them: 32 random letters and digits."""
    return "".join(secrets.choice(_ALNUM) for _ in range(32))


@dataclass
class ToolCall:
    name: str
    arguments: str  # compact JSON text of the arguments object (a prefix of it while streaming)
    id: str = ""


@dataclass
class ChatMsg:
    content: str = ""
    reasoning_content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class Delta:
    """One piece of a streamed message: text for one field, or a tool call's start/arguments."""

    content: str = ""
    reasoning: str = ""
    tool_index: int = -1  # >= 0: this delta is about tool call number tool_index
    tool_name: str = ""  # set on the first delta of a tool call (with tool_id)
    tool_id: str = ""
    tool_args: str = ""


class StreamTracker:
    """What one choice has sent so far; ids for tool calls that the model did not name."""

    def __init__(self):
        self.sent = ChatMsg()
        self._ids: list[str] = []

    def ids_for(self, msg: ChatMsg) -> ChatMsg:
        """msg with every tool call given an id, the same id for the same call across parses: the
        model's own id if it had written one when the call was first seen, else a new one (as
        llama-server; a stream announces a call before the model gets to its "id" field)."""
        for k, call in enumerate(msg.tool_calls):
            if k >= len(self._ids):
                self._ids.append(call.id or new_call_id())
            call.id = self._ids[k]
        return msg

    def update(self, msg: ChatMsg) -> list[Delta]:
        """The deltas that bring the sent message up to `msg`."""
        self.ids_for(msg)
        out: list[Delta] = []
        grow = _growth(self.sent.reasoning_content, msg.reasoning_content)
        if grow:
            out.append(Delta(reasoning=grow))
            self.sent.reasoning_content += grow
        grow = _growth(self.sent.content, msg.content)
        if grow:
            out.append(Delta(content=grow))
            self.sent.content += grow
        for k, call in enumerate(msg.tool_calls):
            if k >= len(self.sent.tool_calls):
                out.append(Delta(tool_index=k, tool_name=call.name, tool_id=call.id, tool_args=call.arguments))
                self.sent.tool_calls.append(ToolCall(call.name, call.arguments, call.id))
                continue
            mine = self.sent.tool_calls[k]
            grow = _growth(mine.arguments, call.arguments)
            if grow:
                out.append(Delta(tool_index=k, tool_args=grow))
                mine.arguments += grow
        return out


def _growth(old: str, new: str) -> str:
    return new[len(old):] if len(new) > len(old) and new.startswith(old) else ""
