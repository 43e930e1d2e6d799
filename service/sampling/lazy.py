"""Lazy grammars: free text until a trigger, then a constrained tail (llguidance Lark).

llama.cpp constrains a tool call only once the model starts one: the sampler runs unconstrained
until a trigger word (`<tool_call>`, `[TOOL_CALLS]`) or a pattern at the start of the output,
then enforces the grammar from the trigger on. llguidance expresses the same thing inside one
grammar, so our Constraint needs no second mode:

    start: free | prefix TAIL            (lazy)     start: TAIL       (forced)

`free` is any text; `prefix` is text ending at the first trigger. A trigger given as text is a
*lazy lexeme* (`rule[lazy]: /(.|\\n)*/ "<tool_call>"`): it matches the shortest text ending in
the trigger, so the grammar commits the moment the trigger is complete. A trigger that is one
special token in the vocabulary is matched as that token (`<[id]>`): the tokenizer adapter marks
special tokens so that text can never spell them, which also keeps the two apart.

Free text may also contain the vocabulary's other special tokens (a thinking model's `<think>`
is one), as it could without a grammar; end-of-generation tokens are left to the grammar, which
allows them wherever the output may end.

    g = LazyGrammar(specials=[...])             # token ids text can never produce
    g.rule("call", json_rule(schema))
    lark = g.lazy([Marker("<tool_call>")], "call")   # or g.forced("call")
    constraint = compiler.compile(grammar=lark)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# llama.cpp's json-schema-to-grammar whitespace (as in grammar.py), for schemas embedded with %json.
JSON_GUIDANCE = {"whitespace_pattern": r"(?: |\n{1,2}[ \t]{0,20})?", "lenient": True}
WS = r"/[ \t\n]*/"  # whitespace around tags: models put newlines there


@dataclass(frozen=True)
class Marker:
    """A fixed piece of output (a trigger, an opening or closing tag): text, or a single special token."""

    text: str
    token: int | None = None  # set when the vocabulary has it as one special token

    def lark(self) -> str:
        return f"<[{self.token}]>" if self.token is not None else json.dumps(self.text)


def json_rule(schema: dict) -> str:
    """A Lark expression for one JSON value matching `schema` (llama.cpp's whitespace rules)."""
    return "%json " + json.dumps({**schema, "x-guidance": JSON_GUIDANCE}, ensure_ascii=False)


def token_set(ids: Iterable[int]) -> str:
    """`<[1,5-9]>`: a Lark terminal for any of these token ids (ranges keep it short)."""
    ids = sorted(set(ids))
    parts, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return f"<[{','.join(parts)}]>"


class LazyGrammar:
    """Builds one Lark grammar: named rules plus a start rule that is lazy or forced."""

    def __init__(self, specials: Iterable[int] = ()):
        self.specials = sorted(set(specials))  # special tokens free text may contain
        self.rules: list[tuple[str, str]] = []

    def rule(self, name: str, body: str) -> str:
        self.rules.append((name, body))
        return name

    def forced(self, tail: str, after: Marker | None = None) -> str:
        """The tail from the first token on, or from just after `after` (free text up to it:
        a thinking block the prompt opened, which the model closes before it calls)."""
        if after is None:
            return self._render(f"start: {tail}", [])
        if after.token is not None:
            return self._render(f"start: TEXT? {after.lark()} {WS} {tail}", [])
        return self._render(f"start: pre_0 {WS} {tail}", [("pre_0", f"LAZY_TEXT {after.lark()}")], {"pre_0"})

    def lazy(self, triggers: Sequence[Marker], tail: str) -> str:
        """Free text, or free text up to the first trigger followed by the tail (the trigger
        itself is consumed here: the tail starts right after it)."""
        if not triggers:
            raise ValueError("lazy grammar: no trigger")
        # A trigger token must end free text, never be part of it.
        self.specials = [t for t in self.specials if t not in {m.token for m in triggers}]
        alts, extra, lazy = ["free"], [], set()
        for k, m in enumerate(triggers):
            if m.token is not None:
                alts.append(f"free {m.lark()} {tail}")
            else:
                head = f"free_seg* trig_{k}" if self.specials else f"trig_{k}"
                extra.append((f"trig_{k}", f"LAZY_TEXT {m.lark()}"))
                lazy.add(f"trig_{k}")
                alts.append(f"{head} {tail}")
        return self._render("start: " + " | ".join(alts), extra, lazy)

    def at_start(self, first_chars: str, tail: str) -> str:
        """Free text that does not begin (after whitespace) with one of `first_chars`, or the
        tail: a trigger *pattern at the start*, as llama.cpp has for Llama 3.x's bare JSON calls."""
        cls = "".join("\\" + c if c in "]\\^-" else c for c in first_chars)
        extra = [("TEXT_OTHER", rf"/[ \t\n]*([^{cls} \t\n](.|\n)*)?/")]
        alts = ["TEXT_OTHER", f"{WS} {tail}"]
        if self.specials:  # a special token first, or after such text, and then anything
            alts.insert(1, f"TEXT_OTHER? {token_set(self.specials)} free")
        return self._render("start: " + " | ".join(alts), extra)

    # -- internals ---------------------------------------------------------------------------

    def _render(self, start: str, extra: list[tuple[str, str]], lazy_rules: set[str] = frozenset()) -> str:
        lines = ["%llguidance {}", start, "TEXT: /(.|\\n)+/", "LAZY_TEXT: /(.|\\n)*/"]
        if self.specials:
            lines += ["free: free_seg* TEXT?", f"free_seg: TEXT? {token_set(self.specials)}"]
        else:
            lines.append("free: TEXT?")
        for name, body in [*extra, *self.rules]:
            lines.append(f"{name}[lazy]: {body}" if name in lazy_rules else f"{name}: {body}")
        return "\n".join(lines) + "\n"
