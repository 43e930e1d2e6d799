"""Model output -> ChatMsg: the thinking block, then content and tool calls, per the request's OutputSpec.

parse_output() reads a whole answer or the prefix streamed so far; OutputStream keeps one streamed
choice's state; final_message() is the non-streamed answer with ids for its tool calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import (
    harmony,
    toolcall_gemma4,
    toolcall_glm,
    toolcall_invoke,
    toolcall_ling3,
    toolcall_muse,
)
from .chatmsg import ChatMsg, Delta, StreamTracker
from .reasoning import ReasoningFormat, ThinkTags, split_reasoning
from .toolcall_formats import ToolFormat, ToolParseError, parse_calls


@dataclass(frozen=True)
class OutputSpec:
    format: ToolFormat = ToolFormat.CONTENT_ONLY  # CONTENT_ONLY unless tool calls are to be parsed
    reasoning: ReasoningFormat = ReasoningFormat.AUTO
    tags: ThinkTags = field(default_factory=ThinkTags)
    forced_open: bool = False  # the prompt opened the thinking block
    in_content: bool = False  # deepseek-legacy in a stream: thoughts stay inline in content
    opened_text: str = ""  # the prompt's end from the opening tag on, when forced open ("<think>\n")
    schemas: dict | None = None  # tool name -> parameters schema when calls are parsed (None: no tools)


class OutputStream:
    """One choice of a streamed chat answer: the text so far, parsed after every piece into
    deltas that only append (see chatmsg.StreamTracker)."""

    def __init__(self, spec: OutputSpec):
        self.spec = spec
        self.text = ""
        self.tracker = StreamTracker()

    def feed(self, piece: str) -> list[Delta]:
        if not piece:
            return []
        self.text += piece
        return self.tracker.update(parse_output(self.spec, self.text, partial=True))

    def finish(self, full: str) -> tuple[ChatMsg, list[Delta]]:
        """The final message (tool calls with the ids the stream used) and the last deltas."""
        msg = parse_output(self.spec, full, partial=False)
        return msg, self.tracker.update(msg)


def final_message(spec: OutputSpec, text: str) -> ChatMsg:
    """The message of a whole (non-streamed) answer, every tool call with an id."""
    return StreamTracker().ids_for(parse_output(spec, text, partial=False))


def parse_output(spec: OutputSpec, text: str, partial: bool) -> ChatMsg:
    """The message in `text`. A final parse of malformed tool calls keeps the text as content
    (llama-server does the same); a partial parse is what is certain so far."""
    if spec.format is ToolFormat.GPT_OSS:
        return harmony.parse(text, partial, reasoning=spec.reasoning is not ReasoningFormat.NONE,
                             tools=spec.schemas is not None)
    if spec.format is ToolFormat.GEMMA_4:  # thought channels anywhere in the answer, not a leading block
        try:
            return toolcall_gemma4.message(text, partial, reasoning=spec.reasoning is not ReasoningFormat.NONE,
                                           tools=spec.schemas is not None)
        except toolcall_gemma4.Gemma4ParseError:
            return ChatMsg(text)
    if spec.format is ToolFormat.MUSE_GLIMMER:  # messages to self, to the user and to tools
        try:
            return toolcall_muse.message(text, partial, reasoning=spec.reasoning is not ReasoningFormat.NONE,
                                         schemas=spec.schemas)
        except (toolcall_muse.MuseParseError, toolcall_invoke.InvokeParseError):
            return ChatMsg(text)
    if spec.format is ToolFormat.LING_3:  # thoughts keep their whitespace; a call may end them
        try:
            return toolcall_ling3.message(text, partial, reasoning=spec.reasoning is not ReasoningFormat.NONE,
                                          opened=spec.forced_open, schemas=spec.schemas)
        except toolcall_glm.GlmParseError:
            return ChatMsg(text)
    if spec.reasoning is ReasoningFormat.NONE and spec.forced_open:
        text = spec.opened_text + text  # thoughts stay in content with the tag the prompt opened (llama-server)
    sp = split_reasoning(text, spec.tags, spec.reasoning, partial=partial, forced=spec.forced_open,
                         in_content=spec.in_content)
    try:
        content, calls = parse_calls(spec.format, sp.rest, partial, spec.schemas)
    except ToolParseError:
        content, calls = sp.rest, []
    return ChatMsg(sp.content_head + content, sp.reasoning, calls)
