"""OpenAI's requests: /v1/completions and /v1/chat/completions (also /apply-template), typed.

Both take every llama-server generation field too (Generation). A chat request becomes the
chat layer's ChatInput (chat_input) plus TaskParams (params.py); Anthropic Messages and OpenAI
Responses requests are converted into a ChatRequest first (protocol_anthropic, protocol_responses).
"""

from __future__ import annotations

from typing import Any, Literal

from service.api.errors import ApiError, bad_request
from service.api.protocol import Generation, Int, Prompt, Request, convert
from service.chat.plan import ChatInput
from service.chat.reasoning import reasoning_format
from service.chat.tools import ToolChoice, ToolRequest


class StreamOptions(Request):
    include_usage: bool | None = False


class OpenAIFields(Generation):
    n: Int | None = 1  # choices
    stream_options: StreamOptions | None = None

    def n_choices(self) -> int:
        if not 1 <= self.n <= 16:
            raise bad_request(f"n: must be in [1, 16], got {self.n}")
        return self.n

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionsRequest(OpenAIFields):
    """/v1/completions: one prompt; `logprobs` is the number of top tokens to report."""

    prompt: Prompt | None = None
    logprobs: Int | None = None

    def logprob_counts(self) -> tuple[int, int]:
        """(top logprobs to report, n_probs for the task)."""
        return self.logprobs or 0, self.logprobs or 0


class FunctionDef(Request):
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(Request):
    function: FunctionDef
    type: str | None = "function"  # only "function" (checked before, with its own message)


class NamedFunction(Request):
    name: str


class NamedToolChoice(Request):
    type: Literal["function"]
    function: NamedFunction


class ChatRequest(OpenAIFields):
    """/v1/chat/completions and /apply-template."""

    messages: list[dict[str, Any]] | None = None  # OpenAI messages, kept as objects for the template
    tools: list[dict[str, Any]] | None = None  # kept as sent: the template prints them
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = False
    reasoning_format: str | None = None
    reasoning_effort: str | None = None  # to the template as chat_template_kwargs.reasoning_effort; "none": no thinking
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool | None = True
    logprobs: bool | None = False
    top_logprobs: Int | None = None
    continue_final_message: bool | str | None = None  # true, "content" or "reasoning_content" (vLLM's name)
    reasoning_budget_tokens: Int | None = None  # thinking tokens allowed (-1: --reasoning-budget's)
    thinking_budget_tokens: Int | None = None  # the same, another client's name
    reasoning_budget_message: str | None = None  # written before the forced end of thinking

    def logprob_counts(self) -> tuple[int, int]:
        """(top logprobs to report, n_probs for the task); llama-server's rules."""
        if self.top_logprobs is not None and not self.logprobs:
            raise bad_request("top_logprobs: requires logprobs to be set to true")
        top = self.top_logprobs or 0
        if self.logprobs and not 0 <= top <= 20:
            raise bad_request(f"top_logprobs: must be in [0, 20], got {top}")
        return (top, max(1, top)) if self.logprobs else (0, 0)


def chat_input(req: ChatRequest, prefill_assistant: bool = True, allow_empty: bool = False) -> ChatInput:
    """The chat layer's input; a 400 naming the field for malformed tools or settings.

    A final assistant message is continued rather than answered when the request says so
    (continue_final_message) or, with --prefill-assistant (the default), whenever the
    conversation ends with one, as llama-server does: the prompt ends with its text. An empty
    conversation is refused unless allowed (Anthropic's route takes one, as llama-server)."""
    if not req.messages and not (allow_empty and req.messages is not None):
        raise bad_request("messages: expected a non-empty array of message objects")
    cont, agp = _continuation(req, prefill_assistant) if req.messages else (False, req.add_generation_prompt)
    rf = None
    if req.reasoning_format is not None:
        try:
            rf = reasoning_format(req.reasoning_format)
        except ValueError as e:
            raise bad_request(str(e)) from None
    s = req.structured(chat=True)
    kwargs = dict(req.chat_template_kwargs or {})
    if req.reasoning_effort == "none":  # llama-server: thinking off, and no effort for the template
        kwargs.pop("reasoning_effort", None)
        kwargs["enable_thinking"] = False
    elif req.reasoning_effort:
        kwargs["reasoning_effort"] = req.reasoning_effort
    return ChatInput(messages=req.messages, tools=tool_request(req), reasoning_format=rf,
                     template_kwargs=kwargs,
                     add_generation_prompt=agp, continue_final=cont,
                     response_schema=s.schema if s is not None else None, has_grammar=bool(req.grammar))


def _continuation(req: ChatRequest, prefill_assistant: bool) -> tuple[bool, bool]:
    """(continue the final message, add the generation prompt), by llama-server's rules."""
    c = req.continue_final_message
    cont = c is True or c in ("content", "reasoning_content")
    agp = req.add_generation_prompt
    last = req.messages[-1]
    if not cont and prefill_assistant and last.get("role") == "assistant":
        if len(req.messages) >= 2 and req.messages[-2].get("role") == "assistant":
            raise bad_request("messages: Cannot have 2 or more assistant messages at the end of the list.")
        cont, agp = True, False
    if cont and agp:
        raise bad_request("Cannot set both add_generation_prompt and continue_final_message to true.")
    if cont and last.get("role") == "assistant" and last.get("tool_calls"):
        raise bad_request("Cannot continue an assistant message that contains tool calls.")
    return cont and last.get("role") == "assistant", agp


def tool_request(req: ChatRequest) -> ToolRequest | None:
    """The request's tools, or None when it has none."""
    if req.tools is None:
        if req.tool_choice not in (None, "auto", "none"):
            raise bad_request("tool_choice: requires tools")
        return None
    functions = []
    for i, raw in enumerate(req.tools):
        where = f"tools[{i}]"
        if raw.get("type", "function") != "function":
            raise bad_request(f'{where}.type: only "function" tools are supported, got {raw.get("type")!r}')
        fn = convert(raw, Tool, where).function
        if not fn.name:
            raise bad_request(f"{where}.function.name: expected a non-empty string")
        params = fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}}
        functions.append({"name": fn.name, "description": fn.description or "", "parameters": params})
    choice, named = _choice(req.tool_choice, [f["name"] for f in functions])
    if named is not None:
        functions = [f for f in functions if f["name"] == named]
    if not req.tools:
        return None
    return ToolRequest(list(req.tools), functions, choice, req.parallel_tool_calls)


def _choice(value: str | dict | None, names: list[str]) -> tuple[ToolChoice, str | None]:
    if value is None:
        return ToolChoice.AUTO, None
    if isinstance(value, str):
        try:
            return ToolChoice(value), None
        except ValueError:
            raise bad_request(f'tool_choice: expected "auto", "none", "required" or a function, got {value!r}') from None
    try:
        name = convert(value, NamedToolChoice, "tool_choice").function.name
    except ApiError:
        raise bad_request('tool_choice: expected {"type": "function", "function": {"name": ...}}') from None
    if name not in names:
        raise bad_request(f"tool_choice: no tool named {name!r}")
    return ToolChoice.REQUIRED, name
