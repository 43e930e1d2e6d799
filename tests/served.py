"""One real `llama-server` per test module, as a module-scoped fixture:

    unified = module_server("unified", "-c", "512", "-kvu")   # tests then take `unified`
"""

from __future__ import annotations

import pytest

from tests.server_proc import ServerProcess


def module_server(name: str, *args: str):
    """A fixture called `name`: a server started with `args` (ready), stopped after the module."""

    @pytest.fixture(scope="module", name=name)
    def serve():
        s = ServerProcess(*args)
        try:
            yield s.wait_ready()
        finally:
            s.stop()

    return serve
