"""Everything a chat request decides before generation: the prompt, the output's syntax, the constraint.

    inp = ChatInput(messages, tools=ToolRequest(...), reasoning_format=None, ...)  # typed at the HTTP edge
    plan = build_plan(template, inp, tokenizer=tok, compiler=compiler, default_reasoning=ReasoningFormat.AUTO,
                      stream=False)
    plan.rendered            # the prompt (Rendered: tokenize it with the model's tokenizer)
    plan.constraint          # the tool-call grammar compiled for this request, or None
    plan.stops               # extra stop strings the format needs
    parse_output(plan.spec, generated_text, partial)   # -> ChatMsg

Steps, as llama-server (common_chat_templates_apply): pick the tool-call format from the
template; rewrite the messages for what the template cannot print (caps.py); render; note
whether the prompt left a thinking block open (and close it when the request turned thinking
off); build the call grammar (lazy
unless a call is required). Blocking: the template renders in a worker with a time limit, and
the grammar compiles here, so run this off the event loop.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import Any

from service.sampling.lazy import Marker

from .caps import caps_of, polyfill, reasoning_markers
from .output import OutputSpec
from .reasoning import ReasoningFormat, forced_open, tags_for
from .rendered import Rendered
from .template import ChatTemplate
from .toolcall_families import framed
from .toolcall_formats import ToolFormat, detect
from .toolcall_grammar import build_grammar
from .tools import ToolChoice, ToolRequest

_specials: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ChatInput:
    """A chat request as the chat layer reads it (the HTTP edge types and checks the fields).

    Messages stay OpenAI-shaped dicts: templates read whatever fields they were written for."""

    messages: list[dict]
    tools: ToolRequest | None = None
    reasoning_format: ReasoningFormat | None = None  # None: the server's --reasoning-format
    template_kwargs: dict[str, Any] = field(default_factory=dict)  # chat_template_kwargs
    add_generation_prompt: bool = True
    response_schema: dict | None = None  # the JSON schema the answer must follow, if any
    has_grammar: bool = False  # the request brought a grammar of its own (not allowed with tools)
    continue_final: bool = False  # the last message is an assistant's to continue, not to answer


@dataclass
class ChatPlan:
    rendered: Rendered
    spec: OutputSpec
    tools: ToolRequest | None
    grammar: str | None  # Lark text of the tool-call constraint
    constraint: Any  # compiled from grammar (service.sampling.Constraint), or None
    stops: tuple[str, ...] = ()
    thinks: bool = False  # the template has a thinking block (spec.tags), open or closed by the prompt


def build_plan(template: ChatTemplate, inp: ChatInput, *, tokenizer: Any, compiler: Any,
               default_reasoning: ReasoningFormat, stream: bool) -> ChatPlan:
    """ValueError (a 400) for a malformed conversation; TemplateError when the template fails."""
    treq = inp.tools
    rf = inp.reasoning_format or default_reasoning
    kwargs = inp.template_kwargs
    schema = inp.response_schema
    if treq is not None and treq.active and inp.has_grammar:
        raise ValueError("grammar: cannot use custom grammar constraints with tools")
    source = template.tool_use_source if treq and template.tool_use_source else template.source
    fmt = detect(source, tools=bool(treq and treq.functions), choice_none=bool(treq and not treq.active),
                 schema=schema is not None)
    messages = inp.messages
    tools = treq.tools if treq else None
    if tools or any(isinstance(m, dict) and (m.get("tool_calls") or m.get("role") in ("tool", "system"))
                    for m in messages):
        messages = polyfill(caps_of(template), messages)
    tags = tags_for(source)
    if inp.continue_final:
        rendered = _continued(template, messages, tools, kwargs, tags, tags.open in source)
    else:
        rendered = template.render(messages, add_generation_prompt=inp.add_generation_prompt, tools=tools,
                                   kwargs=kwargs)
    opened = forced_open(rendered.text, tags)
    if inp.add_generation_prompt and _thinking_off(template, kwargs) and tags.open in source and opened:
        # thinking off where the template opened the block regardless: closed empty in the prompt, as
        # llama-server does; otherwise the template renders thinking off itself (llama-server adds nothing)
        rendered, opened = _appended(rendered, tags.close), False
    active = treq is not None and treq.active
    parse_fmt = fmt if active or fmt is ToolFormat.GPT_OSS or framed(fmt.value) else ToolFormat.CONTENT_ONLY
    opened_text = rendered.text[rendered.text.rfind(tags.open):] if opened else ""
    spec = OutputSpec(parse_fmt, rf, tags, opened, in_content=stream and rf is ReasoningFormat.DEEPSEEK_LEGACY,
                      opened_text=opened_text,
                      schemas={f["name"]: f.get("parameters") or {} for f in treq.functions} if active else None)
    grammar = constraint = None
    if treq is not None and treq.active and compiler is not None:  # None: the prompt alone is wanted
        grammar = build_grammar(fmt, treq.functions, required=treq.choice is ToolChoice.REQUIRED,
                                parallel=treq.parallel, response_schema=None if schema is None else (schema or {"type": "object"}),
                                marker=lambda text: marker(tokenizer, compiler, text), specials=specials(compiler),
                                think_close=tags.close if opened else None)
        try:
            constraint = compiler.compile(grammar=grammar)
        except ValueError as e:  # a tool's parameters schema llguidance cannot compile
            first = str(getattr(e, "detail", e)).splitlines()[0]  # the rest quotes our grammar text
            raise ValueError(f"tools: {re.sub(r'^at [0-9]+[(][0-9]+[)]: ', '', first)}") from None
    stops = ("<|eom_id|>",) if parse_fmt is ToolFormat.LLAMA_3_X else ()
    return ChatPlan(rendered, spec, treq, grammar, constraint, stops, thinks=tags.open in source)


def _appended(r: Rendered, text: str, from_template: bool = True) -> Rendered:
    return Rendered(r.text + text, [*r.parts, (text, from_template)], r.exact)


def _continued(template: ChatTemplate, messages: list[dict], tools, kwargs: dict, tags, thinks: bool) -> Rendered:
    """The conversation before the final assistant message, then that message to continue, as
    llama-server builds it: the generation prompt (the text rendering with it adds), cut before
    the template's thinking opening if it has one; then, where the template thinks, the opening,
    the message's reasoning and, unless only the reasoning is to continue, the closing; then its
    text (text parts joined by blank lines)."""
    last = messages[-1]
    head = template.render(messages[:-1], add_generation_prompt=False, tools=tools, kwargs=kwargs)
    gen = template.render(messages[:-1], add_generation_prompt=True, tools=tools, kwargs=kwargs).text
    common = 0
    while common < min(len(head.text), len(gen)) and head.text[common] == gen[common]:
        common += 1
    prompt = gen[common:]
    content = last.get("content")
    if isinstance(content, list):
        content = "\n\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    thoughts = last.get("reasoning_content")
    thoughts = thoughts if isinstance(thoughts, str) else ""
    r = head
    if thinks:
        start, close = reasoning_markers(template, tags)
        at = prompt.find(start)
        r = _appended(_appended(r, (prompt if at < 0 else prompt[:at]) + start), thoughts, False)
        if content or not thoughts:
            r = _appended(r, close)
    elif prompt:
        r = _appended(r, prompt)
    return _appended(r, content or "", False)


def _thinking_off(template: ChatTemplate, kwargs: dict) -> bool:
    value = kwargs.get("enable_thinking", template.kwargs.get("enable_thinking", True))
    if not isinstance(value, bool):
        raise ValueError("chat_template_kwargs.enable_thinking: expected a boolean")
    return not value


def marker(tokenizer: Any, compiler: Any, text: str) -> Marker:
    """`text` as a grammar marker: the special token when the vocabulary has it as one."""
    tid = tokenizer.token_id(text)
    if tid is not None and compiler.lltokenizer.is_special_token(tid):
        return Marker(text, tid)
    return Marker(text)


def specials(compiler: Any) -> list[int]:
    """Special tokens free text may contain (all but end-of-generation), once per compiler."""
    hit = _specials.get(compiler)
    if hit is None:
        ll, eog = compiler.lltokenizer, set(compiler.eog_ids)
        hit = _specials[compiler] = [t for t in range(compiler.n_vocab) if t not in eog and ll.is_special_token(t)]
    return hit
