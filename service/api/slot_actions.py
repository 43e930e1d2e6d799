"""POST /slots/{id_slot}?action=save|restore|erase (save and restore need --slot-save-path).

An action on a busy slot waits until the slot's task has ended (llama-server defers it), then
runs before a waiting request can take the slot."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from litestar import Request, Response, post

from service.api.apierror import ApiError
from service.api.errors import bad_request, not_supported
from service.api.protocol import SlotFileRequest, decode
from service.engine import slot_store
from service.engine.slot_store import SlotErased, SlotFile

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


@post("/slots/{id_slot:str}", status_code=200)
async def slot_action(request: Request, id_slot: str, action: str | None = None) -> Response:
    st = request.app.state.server
    if not st.args.slots:
        raise not_supported("This server does not support slots endpoint. Start it with `--slots`")
    try:
        sid = int(id_slot)
    except ValueError:
        raise bad_request(f"invalid slot id {id_slot!r}") from None
    if not 0 <= sid < st.n_slots:
        raise bad_request(f"invalid slot id {sid}: the server has {st.n_slots} slots")
    if action not in ("save", "restore", "erase"):
        raise bad_request(f"invalid action {action!r}: expected save, restore or erase")
    req = decode(await request.body(), SlotFileRequest)
    if action == "erase":
        fn = lambda: slot_store.erase(st.engine, sid)  # noqa: E731
    else:
        if not st.args.slot_save_path:
            raise not_supported("This server does not support slot action. Start it with `--slot-save-path`")
        name = req.filename
        if name is None or not _SAFE_NAME.match(name) or name in (".", ".."):
            raise bad_request("filename: expected a plain file name (letters, digits, '.', '_', '-')")
        path = Path(st.args.slot_save_path) / name
        if action == "restore" and not path.is_file():
            raise bad_request(f"no such slot file: {name}")
        op = slot_store.save if action == "save" else slot_store.restore
        fn = lambda: op(st.engine, sid, path)  # noqa: E731
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def run() -> None:
        try:
            res = fn()
            loop.call_soon_threadsafe(fut.set_result, res)
        except Exception as e:  # SlotStoreError (client) or OSError (disk): reported, not raised here
            loop.call_soon_threadsafe(fut.set_exception, e)

    def refused(why: str) -> None:  # the model could not be reloaded after a sleep: a 503, as for a task
        loop.call_soon_threadsafe(fut.set_exception, ApiError(503, why, "unavailable_error"))

    st.engine.call(run, slot=sid, refused=refused)  # a busy slot: the action waits for its task to end, as in llama-server
    try:
        return Response(_json(action, await fut))
    except slot_store.SlotStoreError as e:
        raise bad_request(str(e)) from None


def _json(action: str, r: SlotFile | SlotErased) -> dict:
    """llama-server's answer to each action."""
    if isinstance(r, SlotErased):
        return {"id_slot": r.id_slot, "n_erased": r.n_erased}
    if action == "save":
        return {"id_slot": r.id_slot, "filename": r.filename, "n_saved": r.n_tokens, "n_written": r.n_bytes,
                "timings": {"save_ms": r.ms}}
    return {"id_slot": r.id_slot, "filename": r.filename, "n_restored": r.n_tokens, "n_read": r.n_bytes,
            "timings": {"restore_ms": r.ms}}
