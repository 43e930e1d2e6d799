"""Thinking blocks: `<think>...</think>` (and model-specific equivalents) split off into reasoning_content.

--reasoning-format / the request's `reasoning_format` (llama-server's names):
    none             thoughts stay in `content`, tags and all
    auto, deepseek   thoughts go to `reasoning_content`, streamed as reasoning deltas too (auto is
                     the default and means deepseek here, as in llama-server)
    deepseek-legacy  `reasoning_content` in a whole response; a stream keeps the thoughts inline in
                     `content` between the tags

A block counts only at the start of the output, or from the very first token when the prompt
already opened it (the template ended the generation prompt with the opening tag: "forced open").
An unclosed block is all reasoning. Thoughts are stripped of surrounding whitespace; the content
after the closing tag starts at its first non-blank character. While streaming, a tail that could
still become a tag is held back so that nothing sent has to be taken back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ReasoningFormat(enum.Enum):
    NONE = "none"
    AUTO = "auto"
    DEEPSEEK = "deepseek"
    DEEPSEEK_LEGACY = "deepseek-legacy"


def reasoning_format(name: object, field: str = "reasoning_format") -> ReasoningFormat:
    """The format named by a flag or request field; ValueError naming the field otherwise."""
    try:
        return ReasoningFormat(name)
    except ValueError:
        names = ", ".join(f.value for f in ReasoningFormat)
        raise ValueError(f"{field}: expected one of {names}, got {name!r}") from None


@dataclass(frozen=True)
class ThinkTags:
    open: str = "<think>"
    close: str = "</think>"
    ends: tuple[str, ...] = ()  # markers that also end the block, left in place for the call parser


# Model families whose templates write other tags (recognised by those tags in the template).
_FAMILY_TAGS = [
    ("[THINK]", ThinkTags("[THINK]", "[/THINK]")),  # Magistral
    ("]<]minimax[>[", ThinkTags("<mm:think>", "</mm:think>")),  # MiniMax M3
    # Cohere2 MoE: thoughts the prompt opened may end at the text's or the action's marker (llama.cpp)
    ("<|START_TEXT|>", ThinkTags("<|START_THINKING|>", "<|END_THINKING|>", ends=("<|START_TEXT|>", "<|START_ACTION|>"))),
    ("<|START_THINKING|>", ThinkTags("<|START_THINKING|>", "<|END_THINKING|>")),  # Command R7B
    ("<seed:think>", ThinkTags("<seed:think>", "</seed:think>")),  # Seed-OSS
    # Kimi K2 may call a tool straight from its thoughts without closing them (llama.cpp's parser
    # ends the block at the calls' markers too)
    ("<|tool_calls_section_begin|>", ThinkTags(ends=("<|tool_calls_section_begin|>", "<|tool_call_begin|>"))),
    # DeepSeek V4 too: under a forcing grammar its calls follow the thoughts with no </think> (llama.cpp)
    # Kimi K3: the thoughts may end at the response's opener without their closer (llama.cpp)
    ("<|end_of_msg|>", ThinkTags("<|open|>think<|sep|>", "<|close|>think<|sep|>", ends=("<|open|>response<|sep|>",))),
    ("dsml_token + 'tool_calls>", ThinkTags(ends=("<｜DSML｜tool_calls>",))),
]


def tags_for(template_source: str) -> ThinkTags:
    for needle, tags in _FAMILY_TAGS:
        if needle in template_source:
            return tags
    return ThinkTags()


def forced_open(prompt: str, tags: ThinkTags) -> bool:
    """Whether the rendered prompt leaves a thinking block open for the model to continue."""
    return prompt.rstrip().endswith(tags.open)


def partial_suffix(text: str, word: str) -> int:
    """Where the longest tail of text that is a proper prefix of word starts; len(text) if none."""
    for n in range(min(len(word) - 1, len(text)), 0, -1):
        if text.endswith(word[:n]):
            return len(text) - n
    return len(text)


@dataclass
class Split:
    reasoning: str  # for reasoning_content ("" when kept in content)
    content_head: str  # what the thoughts put in content (deepseek-legacy in a stream; "none" never gets here)
    rest: str  # the output after the block, for the content/tool-call parser


def split_reasoning(text: str, tags: ThinkTags, fmt: ReasoningFormat, *, partial: bool, forced: bool = False,
                    in_content: bool = False) -> Split:
    """Separate a leading thinking block from the rest of the output."""
    if fmt is ReasoningFormat.NONE:
        return Split("", "", text)
    if not forced:
        if not text.startswith(tags.open):
            if partial and text and tags.open.startswith(text):
                return Split("", "", "")  # may still become the opening tag
            return Split("", "", text)
        body_start = len(tags.open)
    else:
        body_start = 0
    end, skip = text.find(tags.close, body_start), len(tags.close)
    for mark in tags.ends:
        at = text.find(mark, body_start)
        if at >= 0 and (end < 0 or at < end):
            end, skip = at, 0
    if end >= 0:
        thoughts, rest, closed = text[body_start:end], text[end + skip:].lstrip(), True
    else:
        cut = min(partial_suffix(text, w) for w in (tags.close, *tags.ends)) if partial else len(text)
        thoughts, rest, closed = text[body_start:cut], "", not partial
    thoughts = thoughts.strip()
    if not thoughts:
        return Split("", "", rest)
    if in_content:
        return Split("", tags.open + thoughts + (tags.close if closed else ""), rest)
    return Split(thoughts, "", rest)
