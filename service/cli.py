"""`llama-server` command line.

The HTTP server lands with its own issue; today the command parses llama-server's model,
context and address flags, loads and validates the model (a broken file exits 1 with one
message naming the file and the field), prints the model's facts and exits.
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
        "-c", "--ctx-size", type=int, default=int(os.environ.get("LLAMA_ARG_CTX_SIZE", "4096")),
        help="size of the prompt context (default: 4096, 0 = loaded from model) (env: LLAMA_ARG_CTX_SIZE)",
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
    from service.model.model import Model  # imported late: --help must not compile kernels

    try:
        model = Model(args.model, n_ctx=max(args.ctx_size, 0), n_seq=1, max_batch=64)
    except ValueError as e:  # GGUFError and ModelError name the file and the field
        print(f"llama-server: error: {e}", file=sys.stderr)
        return 1
    facts = model.facts()
    facts.pop("chat_template")
    print(f"llamajit {__version__}: loaded {args.model} in {model.load_seconds:.2f} s: {facts}")
    print(f"the HTTP server is not built yet (it would listen on {args.host}:{args.port})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
