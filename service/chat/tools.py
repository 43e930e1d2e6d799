"""A request's tools: OpenAI `tools`, `tool_choice` and `parallel_tool_calls`, checked.

    tools: [{"type": "function", "function": {"name", "description"?, "parameters"?}}]
    tool_choice: "auto" (default), "none", "required", or {"type": "function", "function": {"name": ...}}
    parallel_tool_calls: false by default (as llama-server)

A named function restricts the calls to that function and requires one (llama-server treats the
object form as "auto"; OpenAI's meaning is kept here). Problems are ValueErrors naming the field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ToolChoice(enum.Enum):
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"


@dataclass(frozen=True)
class ToolRequest:
    tools: list[dict]  # as the client sent them (what the template sees)
    functions: list[dict]  # {"name", "description", "parameters"} the calls may use
    choice: ToolChoice
    parallel: bool

    @property
    def active(self) -> bool:
        """Whether calls are to be constrained and parsed."""
        return bool(self.functions) and self.choice is not ToolChoice.NONE

    @property
    def required(self) -> bool:
        return self.choice is ToolChoice.REQUIRED


def tool_request(body: dict) -> ToolRequest | None:
    """The request's tools, or None when it has none."""
    tools = body.get("tools")
    if tools is None:
        if body.get("tool_choice") not in (None, "auto", "none"):
            raise ValueError("tool_choice: requires tools")
        return None
    if not isinstance(tools, list):
        raise ValueError("tools: expected an array of tool objects")
    functions = [_function(t, f"tools[{i}]") for i, t in enumerate(tools)]
    names = [f["name"] for f in functions]
    choice, named = _choice(body.get("tool_choice"), names)
    if named is not None:
        functions = [f for f in functions if f["name"] == named]
    parallel = body.get("parallel_tool_calls", False)
    if parallel is None:
        parallel = False
    if not isinstance(parallel, bool):
        raise ValueError("parallel_tool_calls: expected a boolean")
    if not tools:
        return None
    return ToolRequest(tools, functions, choice, parallel)


def _function(tool: object, where: str) -> dict:
    if not isinstance(tool, dict):
        raise ValueError(f"{where}: expected an object")
    if tool.get("type", "function") != "function":
        raise ValueError(f"{where}.type: only \"function\" tools are supported, got {tool.get('type')!r}")
    fn = tool.get("function")
    if not isinstance(fn, dict):
        raise ValueError(f"{where}.function: expected an object")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.function.name: expected a non-empty string")
    params = fn.get("parameters")
    if params is None:
        params = {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        raise ValueError(f"{where}.function.parameters: expected a JSON schema object")
    desc = fn.get("description")
    if desc is not None and not isinstance(desc, str):
        raise ValueError(f"{where}.function.description: expected a string")
    return {"name": name, "description": desc or "", "parameters": params}


def _choice(value: object, names: list[str]) -> tuple[ToolChoice, str | None]:
    if value is None:
        return ToolChoice.AUTO, None
    if isinstance(value, str):
        try:
            return ToolChoice(value), None
        except ValueError:
            raise ValueError(f'tool_choice: expected "auto", "none", "required" or a function, got {value!r}') from None
    if isinstance(value, dict):
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if value.get("type") != "function" or not isinstance(name, str):
            raise ValueError('tool_choice: expected {"type": "function", "function": {"name": ...}}')
        if name not in names:
            raise ValueError(f"tool_choice: no tool named {name!r}")
        return ToolChoice.REQUIRED, name
    raise ValueError("tool_choice: expected a string or an object")
