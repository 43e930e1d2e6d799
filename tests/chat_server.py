"""One SmolLM2 server shared by the chat-dialect test modules (tools, Anthropic, Responses).

A server's first generation pays for loading its compiled kernels, which on a busy 2-core
machine costs more than everything the tests then ask; one process serves all three modules
when they run in the same session, and is stopped when the session's interpreter exits.
"""

from __future__ import annotations

import atexit

import openai
import pytest

from tests.server_proc import ServerProcess

_server: ServerProcess | None = None


def shared_server() -> ServerProcess:
    global _server
    if _server is None or _server.proc.poll() is not None:
        _server = ServerProcess("-c", "2048", "-np", "2").wait_ready()
        atexit.register(_server.stop)
    return _server


# Module-scoped fixtures for the test modules that import them: the shared server, and an
# OpenAI client on it that never retries (a retry would hide a wrong status code).
@pytest.fixture(scope="module")
def server():
    return shared_server()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="sk-none", max_retries=0, timeout=120)
