"""`python -m tests.fault_server ARGS`: llama-server (service.cli's main) with one fault injected
into the engine step, for tests/test_http_errors.py.

A request whose seed is FAULT_SEED makes the engine step raise once it has generated FAULT_AFTER
tokens: Slot.on_token, the per-token bookkeeping every sampled token goes through on the engine
thread, raises as a bug there would. Every other request runs the real code.
"""

from __future__ import annotations

import sys

from service.engine import slot as slot_module

FAULT_SEED = 4242
FAULT_AFTER = 3
FAULT_MESSAGE = "injected fault"
_on_token = slot_module.Slot.on_token


def _faulty_on_token(self, tok, *args, **kwargs):
    g = self.gen
    if g.params.sampling.seed == FAULT_SEED and len(g.generated) >= FAULT_AFTER:
        raise RuntimeError(FAULT_MESSAGE)
    return _on_token(self, tok, *args, **kwargs)


if __name__ == "__main__":
    slot_module.Slot.on_token = _faulty_on_token
    from service.cli import main

    sys.exit(main())
