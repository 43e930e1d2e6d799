"""A request's tools, as the chat layer reads them (the HTTP edge checks the request's fields).

    tools: the client's OpenAI tool objects (what the template sees)
    functions: [{"name", "description", "parameters"}] the calls may use (one, under a named tool_choice)
    choice: auto (the default), none or required; a named function restricts the calls to that
        function and requires one (llama-server treats the object form as "auto"; OpenAI's
        meaning is kept here)
    parallel: several calls in one answer (false by default, as llama-server)
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
