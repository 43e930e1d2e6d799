"""Kimi K3's answers: sections in tags built from the `<|open|>`, `<|close|>` and `<|sep|>` tokens.

    <|open|>message role="assistant"<|sep|><|open|>think<|sep|>thoughts<|close|>think<|sep|>
    <|open|>response<|sep|>On it.<|close|>response<|sep|>
    <|open|>tools<|sep|><|open|>call tool="get_weather" index="1"<|sep|>
    <|open|>argument key="city" type="string"<|sep|>Paris<|close|>argument<|sep|><|close|>call<|sep|>
    <|close|>tools<|sep|><|close|>message<|sep|><|end_of_msg|>

Every answer is written so, tools or not (the format is "framed"). The prompt opens the message
and its think (or, thinking off, response) section, so every opener is optional. reasoning.py
splits the thoughts off (they end at their closer or at the response's opener); with reasoning
kept in the content, this module drops the think tags and keeps the thoughts as content, as
llama.cpp does. An argument's value is typed by the tool's schema, not by its `type` attribute
(llama.cpp: the schema says whether it is JSON or literal text). The call's `index` is no id
(the template numbers calls per message), so calls get fresh ids. While streaming, a call is
announced once its tool's name is closed and grows argument by argument.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import dumps
from .reasoning import partial_suffix
from .toolcall_xml import schema_types, typed_value

OPEN, CLOSE, SEP, EOM = "<|open|>", "<|close|>", "<|sep|>", "<|end_of_msg|>"


def _open(tag: str) -> str:
    return f"{OPEN}{tag}{SEP}"


def _close(tag: str) -> str:
    return f"{CLOSE}{tag}{SEP}"


MSG = _open('message role="assistant"')
THINK, THINK_END, RESP, RESP_END = _open("think"), _close("think"), _open("response"), _close("response")
TOOLS, TOOLS_END, CALL_END, ARG_END, MSG_END = (_open("tools"), _close("tools"), _close("call"), _close("argument"),
                                                _close("message"))
_CALL = re.compile(re.escape(OPEN) + r'call tool="([^"]+)"[^<]*' + re.escape(SEP))
_ARG = re.compile(re.escape(OPEN) + r'argument key="([^"]+)"[^<]*' + re.escape(SEP))
_STOPS = (RESP_END, TOOLS, MSG_END)  # where the response's text ends


class KimiK3ParseError(ValueError):
    pass


def recognise(source: str) -> bool:
    return all(m in source for m in (OPEN, CLOSE, EOM))


def parse(text: str, partial: bool, schemas: dict | None) -> tuple[str, list[ToolCall]]:
    pos, thoughts = _skip(text, 0, MSG), ""
    if partial and _opening(text, pos, (MSG, THINK, RESP)):
        return "", []
    if text.startswith(THINK, pos):  # thoughts kept in the content (reasoning format "none")
        ends = [at for at in (text.find(THINK_END, pos), text.find(RESP, pos)) if at >= 0]
        if not ends:
            return _held(text[pos + len(THINK):], partial, (THINK_END, RESP)), []
        thoughts, pos = text[pos + len(THINK):min(ends)], _skip(text, min(ends), THINK_END)
    if partial and _opening(text, pos, (RESP,)):
        return thoughts, []
    pos = _skip(text, pos, RESP)
    stops = [at for at in (text.find(s, pos) for s in _STOPS) if at >= 0]
    if not stops:
        return thoughts + _held(text[pos:], partial, (*_STOPS, EOM)), []
    content, pos = thoughts + text[pos:min(stops)], _skip(text, min(stops), RESP_END)
    calls: list[ToolCall] = []
    if text.startswith(TOOLS, pos):
        pos, done = _calls(text, pos + len(TOOLS), partial, schemas or {}, calls)
        if not done:
            return content, calls
    pos = _skip(text, _skip(text, pos, MSG_END), EOM)
    if text[pos:].strip() and not (partial and any(w.startswith(text[pos:]) for w in (MSG_END, EOM, TOOLS))):
        if partial:
            return content, calls
        raise KimiK3ParseError("text after the message")
    return content, calls


def _skip(text: str, i: int, word: str) -> int:
    return i + len(word) if text.startswith(word, i) else i


def _opening(text: str, pos: int, words: tuple[str, ...]) -> bool:
    """Whether the text from pos is the start of one of `words` not yet complete (an opener still coming)."""
    tail = text[pos:]
    return any(w.startswith(tail) and w != tail for w in words)


def _held(text: str, partial: bool, words: tuple[str, ...]) -> str:
    """Text that ends the output, less a tail that may still become one of `words`."""
    return text[:min(partial_suffix(text, w) for w in words)] if partial else text


def _calls(text: str, pos: int, partial: bool, schemas: dict, calls: list[ToolCall]) -> tuple[int, bool]:
    """The calls of a tools section from pos into `calls`: (position after it, whether it is complete)."""
    while True:
        if text.startswith(TOOLS_END, pos):
            return pos + len(TOOLS_END), True
        m = _CALL.match(text, pos)
        if m is None:
            if partial:
                return len(text), False
            raise KimiK3ParseError("expected a call or the end of the tools section")
        props = (schemas.get(m.group(1)) or {}).get("properties") or {}
        args, pos = [], m.end()
        while (a := _ARG.match(text, pos)) is not None and (end := text.find(ARG_END, a.end())) >= 0:
            key = a.group(1)
            args.append(f"{dumps(key)}:{dumps(_typed(text[a.end():end], props.get(key)))}")
            pos = end + len(ARG_END)
        if not text.startswith(CALL_END, pos):
            if not partial:
                raise KimiK3ParseError(f"unfinished call of {m.group(1)}")
            calls.append(ToolCall(m.group(1), "{" + ",".join(args)))
            return len(text), False
        calls.append(ToolCall(m.group(1), "{" + ",".join(args) + "}"))
        pos += len(CALL_END)


def _typed(raw: str, schema: dict | None):
    """By the schema (a property without one is text, as in llama.cpp)."""
    return raw if schema is None or not schema.get("type") else typed_value(raw, schema)


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """A tools section of calls of `functions`. The tags are made of special tokens and words, so
    each piece is its own marker. Lazy on the tools section's opener unless a call is required;
    a required call may follow the thoughts and an empty response section."""
    o, c, s = (marker(m).lark() for m in (OPEN, CLOSE, SEP))

    def tag(opener: str, word: str) -> str:
        return f"{opener} {json.dumps(word, ensure_ascii=False)} {s}"

    # a text value ends at its closing tag; as a token, the tag cannot be in a lazy terminal, nor
    # in the text (TEXT holds no special token)
    if marker(CLOSE).token is None:
        g.rule("k3_text[lazy]", f"LAZY_TEXT {tag(c, 'argument')}")
    else:
        g.rule("k3_text", f"TEXT? {tag(c, 'argument')}")
    attrs = r'/( [a-z_]+="[^"<]*")*/'  # the call's index, the argument's type: whatever the model writes
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        args = []
        for j, (key, schema) in enumerate(props.items()):
            head = f"{o} {_word('argument key=' + json.dumps(key, ensure_ascii=False))} {attrs} {s}"
            value = "k3_text" if "string" in schema_types(schema) else f"{json_rule(schema)} {tag(c, 'argument')}"
            args.append(g.rule(f"k3_{k}_{j}", f"{head} {value}"))
        body = f"({' | '.join(args)})*" if args else ""
        head = f"{o} {_word('call tool=' + json.dumps(fn['name'], ensure_ascii=False))} {attrs} {s}"
        alts.append(g.rule(f"k3_{k}", f"{head} {body} {tag(c, 'call')}"))
    one = f"({' | '.join(alts)})"
    g.rule("calls", f"{one}{'+' if parallel else ''} {tag(c, 'tools')} ({tag(c, 'message')})?")
    section = f'"tools" {s} calls'
    if required:
        # plain text up to the thoughts' closer, as LazyGrammar.forced has before a token (with
        # `free` there, whose segments take special tokens, the grammar never came to accept)
        thoughts = f"(TEXT? {tag(c, 'think')})?" if after is not None else ""
        response = f"({tag(o, 'response')})? ({tag(c, 'response')})?"
        return g.forced(f"{thoughts} {WS} {response} {o} {section}")
    opener = marker(OPEN)
    if opener.token is None:  # a vocabulary without the tokens: the whole opener is the trigger
        return g.lazy([marker(TOOLS)], "calls")
    # the token opens every section: after it comes the tools section, or another section and
    # then free text up to the next opener
    g.rule("k3_open", f'{section} | ("response" | "think") {s} free ({o} k3_open)?')
    return g.lazy([opener], "k3_open")



def _word(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
