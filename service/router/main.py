"""Run the router: llama-server started without a model (service.cli hands over here).

The router reads its model sources (service.router.catalog), listens (same transport, TLS and
Gate as a single-model server), starts the models marked load-on-startup, and forwards requests
to the model each one names (service.router.app). It never imports the engine or Numba: it
moves bytes, and each model runs in its own process (service.router.instance says why).

SIGTERM or SIGINT: new requests get 503, every model's server is asked to stop (each drains its
requests for its own --drain-timeout) and is killed if still running after that plus 5 s; then
the router exits 0. A second signal exits at once (1).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import structlog

from service import __version__

log = structlog.get_logger("llamajit.router")


class RouterState:
    """What the Gate reads (service.api.gate): flags, status, requests in flight."""

    def __init__(self, args):
        from service.api.state import Status

        self.args, self.status, self.in_flight = args, Status.READY, 0
        self.engine = None


def run(args, argv: list[str]) -> int:
    from service.api.gate import Gate
    from service.cli import _server_class, listen
    from service.router import catalog, preset
    from service.router.app import RouterApp
    from service.router.pool import Pool

    for flag, reason in args.no_effect:
        log.warning("flag has no effect in llamajit", flag=flag, reason=reason)
    try:
        entries = catalog.build(args.models_dir, args.models_preset)
    except preset.PresetError as e:
        print(f"llama-server: error: {e}", file=sys.stderr)
        return 1
    state = RouterState(args)
    pool = Pool(entries, argv, preset.child_environ(os.environ), args.models_max)
    listening = listen(Gate(RouterApp(pool, args, f"llamajit-{__version__}"), state), args, log)
    if isinstance(listening, int):
        return listening
    config, socks, addresses = listening
    signals = [0]

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = _server_class()(config)

        async def shutdown() -> None:
            from service.api.state import Status

            state.status = Status.DRAINING
            await pool.stop_all(float(args.drain_timeout) + 5)
            server.should_exit = True

        def on_signal(signum) -> None:
            signals[0] += 1
            if signals[0] > 1:
                for inst in pool.instances.values():
                    inst.kill_now()
                os._exit(1)
            log.info("stopping the router and its models", signal=signal.Signals(signum).name)
            loop.create_task(shutdown())

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        names = sorted(n for n, i in pool.instances.items() if not i.entry.hidden)
        log.info("router is listening", addresses=addresses, models=names, models_max=args.models_max,
                 autoload=args.models_autoload)
        for inst in pool.instances.values():
            if inst.entry.load_on_startup:
                pool.load(inst)
        try:
            await server.serve(sockets=socks)
        finally:
            await pool.stop_all(5)

    try:
        asyncio.run(serve())
    except SystemExit:
        return 1
    finally:
        from service import transport

        transport.remove_unix_sockets(addresses)
    return 0
