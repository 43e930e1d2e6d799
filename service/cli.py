"""`llama-server` command line.

The server itself lands with the HTTP issue; today the command parses llama-server's
model flag, prints --help and --version, and checks that the model file exists.
"""

from __future__ import annotations

import argparse
import os
import sys

from service import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llama-server",
        description="llamajit: llama.cpp's llama-server rebuilt in Python with Numba kernels.",
    )
    p.add_argument("--version", action="version", version=f"llamajit {__version__}")
    p.add_argument(
        "-m", "--model", default=os.environ.get("LLAMA_ARG_MODEL"),
        help="model path (GGUF) (env: LLAMA_ARG_MODEL)",
    )
    p.add_argument(
        "--host", default=os.environ.get("LLAMA_ARG_HOST", "127.0.0.1"),
        help="ip address to listen on (default: 127.0.0.1) (env: LLAMA_ARG_HOST)",
    )
    p.add_argument(
        "--port", type=int, default=int(os.environ.get("LLAMA_ARG_PORT", "8080")),
        help="port to listen on (default: 8080) (env: LLAMA_ARG_PORT)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.model is None:
        print("llama-server: error: no model given (-m/--model or LLAMA_ARG_MODEL)", file=sys.stderr)
        return 2
    if not os.path.isfile(args.model):
        print(f"llama-server: error: model file not found: {args.model}", file=sys.stderr)
        return 1
    print(
        f"llamajit {__version__}: model {args.model} found; the HTTP server is not built yet "
        f"(would listen on {args.host}:{args.port})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
