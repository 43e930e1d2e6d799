"""`llama-server`: parse llama-server's flags, start the HTTP server, load the model. Without a
model (no -m, -hf or LLAMA_ARG_MODEL) it starts a router instead, as llama-server does
(service.router).

The server listens at once and answers /health with 503 while the model loads on a
worker thread, as llama-server does. SIGTERM (or SIGINT) drains: /health and new requests
get 503 at once, requests in flight (streams too) may finish for --drain-timeout seconds; then
the engine ends what still runs (a generation gets its final result, stop_type "limit" /
finish_reason "length", as when llama-server's time limit stops one; a task still queued gets
503), and the process exits 0 about a second after the deadline at most; a second signal exits
at once (code 1, as llama-server). A model that fails to load
exits 1 with the reason; bad flags exit 2.

The sockets (every --host address, TLS, -to, --threads-http: service.transport) are bound before
the model loads: an address in use, or a key or certificate that cannot be read, exits 1 at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import contextlib
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import structlog

from service.args import parse_args


# After the drain deadline: how long the handlers may take to send the final events the engine
# gave them, and then how long uvicorn waits for connections before cancelling them. Together
# they bound the exit at --drain-timeout + about 1 s.
CLOSE_GRACE_S = 0.5
_FLOAT_CACHE_TYPES = ("f32", "f16", "bf16")  # the -ctv types that do not need flash attention


def configure_logging(level: int) -> None:
    """JSON lines on stderr at `level` (ServerArgs.log_level: --log-disable, -v, -lv)."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
    )


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # ours (main() installs them) drain before exiting
            yield

    return Server


def _list_devices() -> int:
    """--list-devices: llama.cpp's listing (name: description (total, free)); none without a GPU."""
    from kernels.cuda import launch

    print("Available devices:")
    for name, desc, total, free in launch.devices():
        mem = f" ({total} MiB, {free} MiB free)" if total else ""
        print(f"  {name}: {desc}{mem}")
    return 0


def listen(app, args, log):
    """The bound sockets and uvicorn's config for `app`, or the exit code of a start that cannot
    listen (an address in use, a TLS key or certificate that cannot be read)."""
    import uvicorn

    from service import transport

    try:  # bound now, so an address in use fails the start before the model loads
        socks = transport.bind(args.host, args.port, args.reuse_port)
    except transport.ListenError as e:
        print(f"llama-server: error: {e}", file=sys.stderr)
        return e.code
    tls = bool(args.ssl_key_file and args.ssl_cert_file)  # llama-server needs both for HTTPS
    if bool(args.ssl_key_file) != bool(args.ssl_cert_file):
        log.warning("HTTPS needs both --ssl-key-file and --ssl-cert-file: serving plain HTTP")
    addresses = transport.urls(socks, tls)
    # Idle keep-alive connections close after 5 s, as llama-server's HTTP library does; -to is
    # its read/write timeout (transport.protocol_class, and the Gate for request bodies).
    # timeout_graceful_shutdown: once drain() sets should_exit, uvicorn cancels whatever has not
    # finished after this long (a client that stopped reading its stream) instead of waiting for it
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5, lifespan="off",
                            timeout_graceful_shutdown=CLOSE_GRACE_S,
                            http=transport.protocol_class(args.timeout),
                            ssl_keyfile=args.ssl_key_file if tls else None,
                            ssl_certfile=args.ssl_cert_file if tls else None)
    try:
        config.load()  # reads the key and certificate now: a bad one fails the start
    except (OSError, ValueError) as e:  # (ssl.SSLError is an OSError)
        print(f"llama-server: error: cannot load the TLS key or certificate: {e}", file=sys.stderr)
        for s in socks:
            s.close()
        return 1
    return config, socks, addresses


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv, os.environ)
    if args.list_devices:
        return _list_devices()
    if args.model is None and not args.hf_repo:  # no model: llama-server's router mode
        from service.router.main import run

        configure_logging(args.log_level())
        return run(args, argv)
    if args.model is None and args.hf_repo:
        from service.hub import HubError, resolve_model

        try:
            path, proj = resolve_model(args.hf_repo, args.hf_file, token=args.hf_token, offline=args.offline,
                                       mmproj=args.mmproj_auto and not args.mmproj)  # llama-server's rule
            args = dataclasses.replace(args, model=path, mmproj=args.mmproj or proj)
        except HubError as e:
            print(f"llama-server: error: {e}", file=sys.stderr)
            return 1
    if not os.path.isfile(args.model):
        print(f"llama-server: error: model file not found: {args.model}", file=sys.stderr)
        return 1
    draft_v = args.spec_draft_type_v if args.spec_draft_model else "f16"  # llama.cpp's rule holds for both contexts
    if (args.cache_type_v not in _FLOAT_CACHE_TYPES or draft_v not in _FLOAT_CACHE_TYPES) and args.flash_attn == "off":
        print("llama-server: error: quantized V cache requires flash_attn to be enabled", file=sys.stderr)
        return 1
    if args.threads > 0:  # Numba's pool, sized for the larger of -t (decode) and -tb (prompts)
        os.environ.setdefault("NUMBA_NUM_THREADS", str(max(args.threads, args.threads_batch or 0)))
    from service.model import kvcache  # (imports Numba: after NUMBA_NUM_THREADS)

    kvcache.set_default_types(args.cache_type_k, args.cache_type_v)  # the Model the server loads takes these
    from service.model.prefetch import prefetch  # the model loads while the HTTP stack starts (see there)
    prefetch(args.model, args.n_gpu_layers, args.device)
    configure_logging(args.log_level())
    log = structlog.get_logger("llamajit.server")
    for flag, reason in args.no_effect:  # accepted for llama-server compatibility, but nothing changes
        log.warning("flag has no effect in llamajit", flag=flag, reason=reason)
    if args.cache_type_v not in _FLOAT_CACHE_TYPES and args.flash_attn == "auto":
        log.info("enabling flash_attn since it is required for quantized V cache")  # llama.cpp's line
    from service import transport
    from service.api.app import create_app

    _Server = _server_class()
    from service.api.state import ServerState, Status

    state = ServerState(args)
    app = create_app(state)
    listening = listen(app, args, log)
    if isinstance(listening, int):
        return listening
    config, socks, addresses = listening
    n_http = transport.http_threads(args.threads_http, args.resolved_parallel())
    server = _Server(config)
    exit_code = [0]  # a drained shutdown is a clean exit
    signals = [0]
    drain_timeout = float(args.drain_timeout)

    def on_signal(signum, _frame) -> None:
        signals[0] += 1
        if signals[0] > 1:
            log.warning("second signal: exiting now")
            os._exit(1)
        state.status = Status.DRAINING
        log.info("draining", signal=signal.Signals(signum).name, grace_s=drain_timeout)
        threading.Thread(target=drain, daemon=True).start()

    def busy() -> bool:
        return state.in_flight > 0 or bool(state.engine and (state.engine.n_busy or state.engine.n_deferred))

    def drain() -> None:
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline and busy():
            time.sleep(0.05)
        if busy() and state.engine is not None:
            # the grace is over: the engine ends what still runs (each stream gets its final event,
            # Engine.close), and the handlers get a moment to send those events before uvicorn stops
            state.engine.close()
            settle = time.monotonic() + CLOSE_GRACE_S
            while time.monotonic() < settle and state.in_flight > 0:
                time.sleep(0.02)
        server.should_exit = True

    async def serve_http() -> None:
        # --threads-http: the pool that asyncio.to_thread (the handlers' blocking work) runs on
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(n_http, thread_name_prefix="http"))
        await server.serve(sockets=socks)

    def serve() -> None:
        try:
            asyncio.run(serve_http())
        except SystemExit:  # uvicorn could not start
            exit_code[0] = 1
        finally:
            transport.remove_unix_sockets(addresses)
            served.set()
            if state.engine is not None:
                state.engine.shutdown()

    served = threading.Event()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    http = threading.Thread(target=serve, name="http", daemon=True)
    http.start()
    state.load()  # on the main thread, which then runs the engine (see service.engine.engine)
    if state.load_error is not None:
        print(f"llama-server: error: {state.load_error}", file=sys.stderr)
        server.should_exit = True
        http.join(10)
        return 1
    if not served.is_set():
        log.info("server is listening", addresses=addresses, http_threads=n_http)
        state.engine.run()
    http.join(10)
    # Interpreter teardown frees the model's arrays and Numba's state object by object (measured:
    # 0.7 s on 2 cores), time the drain deadline does not have, and there is nothing left to clean
    # up: the logs are flushed and the exit is immediate (the chat worker exits on its stdin's EOF).
    with contextlib.suppress(OSError):  # a reader that went away loses the last lines, nothing more
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(exit_code[0])


if __name__ == "__main__":
    sys.exit(main())
