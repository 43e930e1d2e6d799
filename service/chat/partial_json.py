"""JSON that may still be arriving: parse a prefix, and print the part of its compact form that is certain.

A streamed tool call shows its arguments while the model writes them. OpenAI clients concatenate
the `arguments` deltas, so every delta must extend what was sent towards the final string, which
is the compact JSON of the parsed arguments (llama.cpp sends `json.dump()` of them, ours is
`json.dumps(..., separators=(",", ":"), ensure_ascii=False)`). `canonical()` of a partial value
is always a prefix of `canonical()` of the finished value: strings are re-encoded character by
character (an unfinished escape or a lone high surrogate is held back), numbers and literals
appear only once complete (`12` may still become `125`), whitespace outside strings is dropped.

    node = parse_prefix('{"city": "Par')      # Node(kind="obj", complete=False, ...)
    canonical(node)                            # '{"city":"Par'
    node.get("city").value                     # 'Par'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_WS = " \t\n\r"
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_PREFIX = re.compile(r"-?(?:0|[1-9][0-9]*)?(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class NotJSON(ValueError):
    """The text cannot be the beginning of a JSON value."""


@dataclass
class Node:
    kind: str  # "obj", "arr", "str", "num", "lit"
    complete: bool
    start: int  # where the value starts in the text
    end: int  # just past what was read
    value: Any = None  # str: decoded text so far; num/lit: the Python value once complete
    members: dict[str, Node] = field(default_factory=dict)  # obj: finished keys -> values
    items: list[Node] = field(default_factory=list)  # arr
    pending_key: str | None = None  # obj: a key being read (partial text) or read, value not started
    key_done: bool = False  # obj: pending_key is complete
    colon: bool = False  # obj: the colon after pending_key was read

    def get(self, key: str) -> Node | None:
        return self.members.get(key)

    def python(self) -> Any:
        """The value (complete nodes only)."""
        if not self.complete:
            raise NotJSON("incomplete JSON value")
        if self.kind == "obj":
            return {k: v.python() for k, v in self.members.items()}
        if self.kind == "arr":
            return [v.python() for v in self.items]
        return self.value


def skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def skip_spaces(text: str, i: int) -> int:
    """Past the spaces, tabs and newlines that templates put between tool-call markup (no \r:
    the call formats' own separators, not JSON's)."""
    while i < len(text) and text[i] in " \t\n":
        i += 1
    return i


def parse_prefix(text: str, pos: int = 0, final: bool = False) -> Node | None:
    """The JSON value starting at text[pos] (after whitespace), complete or cut off by the end
    of the text; None when nothing but whitespace follows. NotJSON if it cannot be JSON.
    final: the text is all there will be (a number at its very end is then complete)."""
    i = skip_ws(text, pos)
    if i >= len(text):
        return None
    return _value(text, i, final)


def _value(text: str, i: int, final: bool) -> Node:
    c = text[i]
    if c == "{":
        return _object(text, i, final)
    if c == "[":
        return _array(text, i, final)
    if c == '"':
        return _string(text, i)
    if c == "-" or c.isdigit():
        return _number(text, i, final)
    for word, val in (("true", True), ("false", False), ("null", None)):
        chunk = text[i : i + len(word)]
        if word.startswith(chunk):
            done = len(chunk) == len(word)
            return Node("lit", done, i, i + len(chunk), val if done else None)
    raise NotJSON(f"unexpected {c!r} at {i}")


def _string(text: str, i: int) -> Node:
    out, j = [], i + 1
    while j < len(text):
        c = text[j]
        if c == '"':
            return Node("str", True, i, j + 1, "".join(out))
        if c == "\\":
            if j + 1 >= len(text):
                break  # an escape still arriving
            e = text[j + 1]
            if e == "u":
                hexa = text[j + 2 : j + 6]
                if len(hexa) < 4:
                    break
                cp = int(hexa, 16) if re.fullmatch(r"[0-9a-fA-F]{4}", hexa) else -1
                if cp < 0:
                    raise NotJSON(f"bad \\u escape at {j}")
                if 0xD800 <= cp < 0xDC00:  # a surrogate pair: wait for its second half
                    low = text[j + 6 : j + 12]
                    if len(low) < 6:
                        break
                    m = re.fullmatch(r"\\u([dD][c-fC-F][0-9a-fA-F]{2})", low)
                    if not m:
                        raise NotJSON(f"unpaired surrogate at {j}")
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (int(m.group(1), 16) - 0xDC00)
                    j += 6
                out.append(chr(cp))
                j += 6
                continue
            if e not in _ESCAPES:
                raise NotJSON(f"bad escape at {j}")
            out.append(_ESCAPES[e])
            j += 2
            continue
        if ord(c) < 0x20:
            raise NotJSON(f"control character in string at {j}")
        out.append(c)
        j += 1
    return Node("str", False, i, j, "".join(out))


def _number(text: str, i: int, final: bool) -> Node:
    m = _NUMBER_PREFIX.match(text, i)
    j = m.end()
    if j < len(text) or final:  # something follows (or nothing will): the number ends here
        full = _NUMBER.match(text, i)
        if full is None or full.end() != j:
            raise NotJSON(f"bad number at {i}")
        return Node("num", True, i, j, json.loads(text[i:j]))
    return Node("num", False, i, j)


def _object(text: str, i: int, final: bool) -> Node:
    node = Node("obj", False, i, i + 1)
    j = skip_ws(text, i + 1)
    if j < len(text) and text[j] == "}":
        node.complete, node.end = True, j + 1
        return node
    while j < len(text):
        if text[j] != '"':
            raise NotJSON(f"expected a key at {j}")
        key = _string(text, j)
        node.pending_key, node.key_done, node.end = key.value, key.complete, key.end
        if not key.complete:
            return node
        j = skip_ws(text, key.end)
        if j >= len(text):
            return node
        if text[j] != ":":
            raise NotJSON(f"expected ':' at {j}")
        node.colon, node.end = True, j + 1
        j = skip_ws(text, j + 1)
        if j >= len(text):
            return node
        val = _value(text, j, final)
        if not val.complete:
            node.members[key.value] = val
            node.pending_key, node.end = None, val.end
            return node
        node.members[key.value] = val
        node.pending_key, node.key_done, node.colon = None, False, False
        node.end = val.end
        j = _after_item(node, text, "}")
    return node


def _array(text: str, i: int, final: bool) -> Node:
    node = Node("arr", False, i, i + 1)
    j = skip_ws(text, i + 1)
    if j < len(text) and text[j] == "]":
        node.complete, node.end = True, j + 1
        return node
    while j < len(text):
        val = _value(text, j, final)
        node.items.append(val)
        node.end = val.end
        if not val.complete:
            return node
        j = _after_item(node, text, "]")
    return node


def _after_item(node: Node, text: str, close: str) -> int:
    """After a container's complete item ending at node.end: the next item's start, or
    len(text) when the text ends or the container closes here (node then complete)."""
    j = skip_ws(text, node.end)
    if j >= len(text):
        return j
    if text[j] == close:
        node.complete, node.end = True, j + 1
        return len(text)
    if text[j] != ",":
        raise NotJSON(f"expected ',' or '{close}' at {j}")
    node.end = j + 1
    return skip_ws(text, j + 1)


def dumps(value: Any) -> str:
    """Compact JSON, as tool-call arguments are sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def canonical(node: Node | None) -> str:
    """The compact JSON of a complete node; for a partial one, the part certain to begin it."""
    if node is None:
        return ""
    if node.complete:
        return dumps(node.python())
    if node.kind == "str":
        return dumps(node.value)[:-1]  # without the closing quote
    if node.kind in ("num", "lit"):
        return ""
    if node.kind == "arr":
        return "[" + ",".join(canonical(v) for v in node.items)
    parts = [f"{dumps(k)}:{canonical(v)}" for k, v in node.members.items()]
    out = "{" + ",".join(parts)
    if node.pending_key is not None:
        key = dumps(node.pending_key) if node.key_done else dumps(node.pending_key)[:-1]
        out += ("," if parts else "") + key + (":" if node.colon else "")
    return out
