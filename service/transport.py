"""The HTTP transport under the ASGI app, as llama-server's HTTP layer behaves.

- Listen addresses (`--host`, `--port`, `--reuse-port`): `--host` takes comma-separated
  addresses; one ending in `.sock` is a UNIX socket path, the others are IP addresses or names
  bound on `--port`. With several TCP addresses an IPv6 one binds IPv6 only (so `::` does not
  also claim 0.0.0.0), and `--port 0` (any free port) is refused: the addresses would get
  different ports. Every socket gets SO_REUSEADDR, and SO_REUSEPORT with `--reuse-port`. The
  sockets are bound before the model loads, so an address in use fails the start at once.
- TLS (`--ssl-key-file` and `--ssl-cert-file`): with both, every address serves HTTPS; with
  only one, plain HTTP, as llama-server (a warning says so).
- `-to/--timeout N` at the connection level (see `protocol_class`); the Gate times out request
  bodies that the app is reading (service.api.gate).
- `--threads-http N` (see `http_threads`).
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger("llamajit.http")


class ListenError(Exception):
    """An address that cannot be served; the message names it. `code`: the exit status (2 for a
    --host/--port combination that can never work, 1 for an address that cannot be bound now)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def hosts(spec: str) -> list[str]:
    """--host: comma-separated, blanks around and between commas dropped."""
    out = [h.strip() for h in spec.split(",") if h.strip()]
    if not out:
        raise ListenError("--host requires at least one address", 2)
    return out


def bind(host_spec: str, port: int, reuse_port: bool = False) -> list[socket.socket]:
    """One bound (not yet listening) socket per --host address; all are closed on an error."""
    names = hosts(host_spec)
    n_tcp = sum(not h.endswith(".sock") for h in names)
    if port == 0 and n_tcp > 1:
        raise ListenError("--port 0 is not supported with multiple TCP addresses", 2)
    socks: list[socket.socket] = []
    try:
        for h in names:
            socks.append(_bind_one(h, port, reuse_port, v6only=n_tcp > 1))
            if port == 0 and socks[-1].family != socket.AF_UNIX:
                port = socks[-1].getsockname()[1]  # (one TCP address only, checked above)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def _bind_one(host: str, port: int, reuse_port: bool, v6only: bool) -> socket.socket:
    if host.endswith(".sock"):
        family, addr = socket.AF_UNIX, host
    else:
        try:
            family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE)[0]
        except socket.gaierror as e:
            raise ListenError(f"cannot resolve --host {host}: {e.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:  # (both are about ports; Linux refuses SO_REUSEPORT on a UNIX socket)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        sock.bind(addr)
    except OSError as e:
        sock.close()
        where = host if family == socket.AF_UNIX else f"{host}:{port}"
        raise ListenError(f"couldn't bind HTTP server socket {where}: {e.strerror}") from None
    return sock


def urls(socks: list[socket.socket], tls: bool) -> list[str]:
    """The addresses served, as llama-server prints them (unix://PATH, http[s]://HOST:PORT)."""
    out = []
    for s in socks:
        name = s.getsockname()
        if s.family == socket.AF_UNIX:
            out.append(f"unix://{name}")
        else:
            host = f"[{name[0]}]" if s.family == socket.AF_INET6 else name[0]
            out.append(f"{'https' if tls else 'http'}://{host}:{name[1]}")
    return out


def remove_unix_sockets(addresses: list[str]) -> None:
    """Remove the socket files of `urls()` once the server has closed them, so that the next start
    can bind them again."""
    for a in addresses:
        if a.startswith("unix://"):
            try:
                os.unlink(a[len("unix://"):])
            except OSError:
                pass


def http_threads(threads_http: int, n_slots: int) -> int:
    """--threads-http: the size of the thread pool the HTTP side runs its blocking work on (the
    event loop's default executor: chat-template rendering, tool-call grammar compiling, the
    template-capability probe). Requests themselves are served by the one event loop and
    generation runs on the engine thread, so this pool is what caps how many requests prepare at
    once. Default (< 1): llama-server's, max(slots + 4, CPU cores - 1)."""
    if threads_http > 0:
        return threads_http
    return max(n_slots + 4, (os.cpu_count() or 1) - 1)


def protocol_class(timeout: int):
    """uvicorn's HTTP/1.1 protocol with llama-server's -to N (seconds; 0 turns it off) on each
    connection, as cpp-httplib applies its read and write timeouts to every socket read and write:

    - read: a client that has sent part of a request head, or part of a body the server no
      longer reads (the answer is already out, e.g. a 413), and then nothing for N seconds is
      disconnected. A body the app is reading is timed by the Gate, which answers 400 first.
    - write: a response none of which can be written for N seconds (the client stopped reading
      and the socket buffers are full) is abandoned: the connection is dropped, which the app
      sees as a disconnect (a stream's generation is cancelled). A slow reader is not cut off.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(H11Protocol):
        _read_timer = _write_timer = None

        def _cancel(self, name: str) -> None:
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._cancel("_read_timer")
            theirs = self.conn.their_state
            head = theirs is h11.IDLE and bool(self.conn.trailing_data[0])
            unread = theirs is h11.SEND_BODY and self.cycle is not None and self.cycle.response_complete
            if timeout > 0 and (head or unread):
                self._read_timer = self.loop.call_later(timeout, self._stalled, "reading the request")

        def pause_writing(self) -> None:
            super().pause_writing()
            if timeout > 0 and self._write_timer is None:
                self._watch_writes()

        def _watch_writes(self) -> None:
            # While writing is paused nothing is added to the buffer (uvicorn waits to send more),
            # so a smaller buffer N seconds later means the client reads, however slowly.
            left = self.transport.get_write_buffer_size()

            def check() -> None:
                self._write_timer = None
                if self.transport.get_write_buffer_size() < left:
                    self._watch_writes()
                else:
                    self._stalled("writing the response")

            self._write_timer = self.loop.call_later(timeout, check)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._cancel("_write_timer")

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel("_read_timer")
            self._cancel("_write_timer")
            super().connection_lost(exc)

        def _stalled(self, doing: str) -> None:
            log.warning("connection dropped: no progress", doing=doing, timeout_s=timeout, client=self.client)
            self.transport.abort()

    return TimedH11Protocol
