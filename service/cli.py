"""`llama-server`: parse llama-server's flags, start the HTTP server, load the model.

The server listens at once and answers /health with 503 while the model loads on a
worker thread, as llama-server does. SIGTERM (or SIGINT) drains: /health and new requests
get 503 at once, requests in flight (streams too) may finish for --drain-timeout seconds,
then the process exits 0; a second signal exits at once. A model that fails to load
exits 1 with the reason; bad flags exit 2.
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

import structlog

from service.args import parse_args


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    if args.list_devices:
        return _list_devices()
    if args.model is None and args.hf_repo:
        from service.hub import HubError, resolve_model

        try:
            args = dataclasses.replace(args, model=resolve_model(args.hf_repo, args.hf_file, token=args.hf_token,
                                                                 offline=args.offline))
        except HubError as e:
            print(f"llama-server: error: {e}", file=sys.stderr)
            return 1
    if args.model is None:
        print("llama-server: error: no model given (-m/--model, -hf/--hf-repo or LLAMA_ARG_MODEL)", file=sys.stderr)
        return 2
    if not os.path.isfile(args.model):
        print(f"llama-server: error: model file not found: {args.model}", file=sys.stderr)
        return 1
    if args.threads > 0:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    configure_logging(args.log_level())
    log = structlog.get_logger("llamajit.server")
    for flag, reason in args.no_effect:  # accepted for llama-server compatibility, but nothing changes
        log.warning("flag has no effect in llamajit", flag=flag, reason=reason)
    import uvicorn

    from service.api.app import create_app

    _Server = _server_class()
    from service.api.state import ServerState, Status

    state = ServerState(args)
    app = create_app(state)
    # Idle keep-alive connections close after 5 s, as llama-server's HTTP library does (-to is its
    # read/write timeout, a different thing, not implemented yet).
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            timeout_keep_alive=5, lifespan="off")
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

    def drain() -> None:
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline and (state.in_flight > 0 or (state.engine and state.engine.n_busy)):
            time.sleep(0.05)
        server.should_exit = True

    def serve() -> None:
        try:
            asyncio.run(server.serve())
        except SystemExit:  # uvicorn could not start (e.g. the port is taken)
            exit_code[0] = 1
        finally:
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
        log.info("server is listening", host=args.host, port=args.port)
        state.engine.run()
    http.join(10)
    return exit_code[0]


if __name__ == "__main__":
    sys.exit(main())
