"""The chat template in force: which one, and rendering messages through it.

    tmpl = ChatTemplate.from_model(metadata, name=args.chat_template, file=args.chat_template_file,
                                   bos_token="<bos>", eos_token="<eos>", kwargs=cli_kwargs)
    rendered = tmpl.render(messages, add_generation_prompt=True, tools=None, kwargs=req_kwargs)
    ids = rendered.tokenize(tokenizer)

Which template (first that applies): the --chat-template-file contents; --chat-template NAME, a
built-in name or else a jinja template given literally (llama-server --jinja takes it literally);
the model's `tokenizer.chat_template`; a built-in picked by general.architecture; chatml, as
llama-server falls back to.

Rendering runs in the worker process (worker.py) under a time limit, an output-size limit that
grows with the conversation, and a memory cap. render() blocks for up to the time limit: call it
from a thread, not from an event loop.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from . import builtin, messages as msgs, split
from .rendered import Rendered
from .worker import RenderWorker, WorkerFailure, shared_worker

__all__ = ["ChatTemplate", "TemplateError", "TemplateRaised"]

OUTPUT_LIMIT = 1 << 20  # characters of prompt beyond twice the size of what the client sent
TIME_LIMIT = 2.0  # seconds per render
_GRACE = 0.5  # beyond the time limit before the worker is killed rather than asked to stop


class TemplateError(ValueError):
    """The chat template failed. `kind` is syntax, raised, time, size, security or error.
    `client_error` is True when the template refused the conversation itself (raise_exception):
    a 400 with this message; any other kind is the server's template at fault."""

    client_error = False

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


class TemplateRaised(TemplateError):
    client_error = True

    def __init__(self, message: str):
        super().__init__(message, "raised")


class ChatTemplate:
    def __init__(self, source: str, *, name: str, bos_token: str, eos_token: str,
                 kwargs: dict | None = None, tool_use_source: str | None = None,
                 time_limit: float = TIME_LIMIT, output_limit: int = OUTPUT_LIMIT,
                 worker: RenderWorker | None = None):
        self.source = source  # the jinja text in force (/props "chat_template")
        self.name = name  # built-in name, "model", "file" or "custom"
        self.tool_use_source = tool_use_source  # the model's template for requests with tools
        self.bos_token, self.eos_token = bos_token, eos_token
        self.kwargs = dict(kwargs or {})  # --chat-template-kwargs
        self.time_limit, self.output_limit = time_limit, output_limit
        self._worker = worker or shared_worker
        for src in filter(None, (source, tool_use_source)):
            reply = self._call({"op": "compile", "source": src})
            if not reply.get("ok"):
                raise _error(reply, "chat template")
        self.typed_content = self._reads_typed_content()

    @classmethod
    def from_model(cls, metadata: dict, *, name: str | None = None, file: str | None = None,
                   bos_token: str, eos_token: str, kwargs: dict | None = None,
                   **options: Any) -> ChatTemplate:
        tool_use = None
        if file:
            try:
                source, label = Path(file).read_text(encoding="utf-8"), "file"
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"--chat-template-file: cannot read {file}: {e}") from None
        elif name:
            source, label = _named(name)
        elif isinstance(metadata.get("tokenizer.chat_template"), str):
            source, label = _named_or_model(metadata["tokenizer.chat_template"])
            tool_use = metadata.get("tokenizer.chat_template.tool_use")
            tool_use = tool_use if isinstance(tool_use, str) and tool_use else None
        else:
            label = builtin.default_for(metadata)
            source = builtin.BUILTIN[label]
        return cls(source, name=label, bos_token=bos_token, eos_token=eos_token, kwargs=kwargs,
                   tool_use_source=tool_use, **options)

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True,
               tools: list | None = None, kwargs: dict | None = None) -> Rendered:
        """The prompt for `messages`. ValueError naming the field for malformed messages;
        TemplateError when the template fails, refuses, or runs past its limits."""
        if tools is not None and not isinstance(tools, list):
            raise ValueError("tools: expected an array")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ValueError("chat_template_kwargs: expected an object")
        real = msgs.normalize(messages, self.typed_content)
        nonce = split.new_nonce()
        skeleton, texts = split.sentinelize(real, nonce)
        now = datetime.now()  # llama-server's extra context, which dated templates print
        context = {"bos_token": self.bos_token, "eos_token": self.eos_token,
                   "add_generation_prompt": bool(add_generation_prompt),
                   "documents": None, "enable_thinking": True,
                   **({"tools": tools} if tools else {}),  # undefined without tools, as llama-server
                   "date_string": now.strftime("%d %b %Y"), "datetime": now.strftime("%b %d %Y"),
                   **self.kwargs, **(kwargs or {})}  # the worker gets a JSON copy of all this
        source = self.tool_use_source if tools and self.tool_use_source else self.source
        limit = self.output_limit + 2 * msgs.text_size(real, tools, kwargs)
        results = self._render(source, context, [real, skeleton] if texts else [real], limit)
        if not results[0].get("ok"):
            raise _error(results[0], "chat template")
        text = results[0]["text"]
        sk = results[1].get("text") if len(results) > 1 else text
        parts, exact = split.align(text, sk, texts, nonce)
        return Rendered(text, parts, exact)

    # -- internals ---------------------------------------------------------------------------

    def _render(self, source: str, context: dict, message_lists: list, limit: int) -> list[dict]:
        reply = self._call({"op": "render", "source": source, "context": context,
                            "messages": message_lists, "output_limit": limit,
                            "time_limit": self.time_limit})
        return reply["results"]

    def _call(self, req: dict) -> dict:
        try:
            return self._worker.request(req, self.time_limit + _GRACE)
        except WorkerFailure as e:
            raise TemplateError(str(e), e.kind) from None
        except UnicodeEncodeError:
            raise ValueError("messages: text contains an unpaired UTF-16 surrogate") from None
        except (TypeError, msgspec.EncodeError) as e:  # only reachable from Python callers
            raise ValueError(f"messages, tools and kwargs must be JSON data: {e}") from None

    def _reads_typed_content(self) -> bool:
        """Whether the template prints only typed parts (`content[0].text`) and not a string
        content; decided, as llama.cpp does, by rendering a probe both ways."""
        probe = f"probe{time.monotonic_ns()}"
        context = {"bos_token": self.bos_token, "eos_token": self.eos_token,
                   "add_generation_prompt": False, "tools": None, "documents": None,
                   "enable_thinking": True, **self.kwargs}
        try:
            as_str, as_parts = self._render(self.source, context, [
                [{"role": "user", "content": probe}],
                [{"role": "user", "content": [{"type": "text", "text": probe}]}]], 1 << 16)
        except TemplateError:
            return False
        return (not (as_str.get("ok") and probe in as_str["text"])
                and bool(as_parts.get("ok")) and probe in as_parts["text"])


def _named(name: str) -> tuple[str, str]:
    if name in builtin.BUILTIN:
        return builtin.BUILTIN[name], name
    if "{{" in name or "{%" in name:
        return name, "custom"
    raise ValueError(f"--chat-template: unknown built-in template {name!r} (built-ins: "
                     f"{', '.join(builtin.builtin_names())}; or give a jinja template)")


def _named_or_model(source: str) -> tuple[str, str]:
    # Some conversions store a built-in's name instead of a template.
    return (builtin.BUILTIN[source], source) if source in builtin.BUILTIN else (source, "model")


def _error(reply: dict, what: str) -> TemplateError:
    kind, message = reply.get("kind", "error"), reply.get("message", "unknown failure")
    if kind == "raised":
        return TemplateRaised(message)
    return TemplateError(f"{what}: {message}", kind)
