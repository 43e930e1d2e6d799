"""Prompt reuse across conversations: four chats alternating on two slots (issue 16's target).

Four conversations, each opening with its own document of about 600 tokens, take turns on a
server with `-np 2` (A B C D A B C D ...), 8 turns each, 16 greedy tokens per answer. With two
slots, a returning conversation never finds its prompt in the slot it lands on (two others ran
there since): it is served from the host-RAM prompt cache (`--cache-ram`) or evaluated again.
Each server runs twice, with the cache (its defaults) and without it (`cache_prompt: false` on
every request), and the script prints the median time to first token of the returning turns
(turns 2 to 8), their ratio (the target: cache on at most 1/5 of cache off) and the hit rate
(prompt tokens taken from the cache over all prompt tokens of those turns, from `timings`),
for llamajit and llama.cpp's llama-server in the same run. A second table (`shared`): two users
with one system prompt arriving together, where one lands on the slot that does not hold it
(llamajit copies it from the other slot; llama-server evaluates it again).

    python benchmarks/bench_prefix.py [--model smollm2|gemma3] [--turns 8] [--scenario both] [--peer PATH]
    (make bench-prefix)

Measured on the 2-core development machine (Dec 2026, SmolLM2, 3 turns, the machine busy with
other work, so the absolute times are long; the ratios are what counts), median TTFT ms:
    llamajit      cache on 926   off 18,525   0.05   hit rate 98.6%
    llama-server  cache on 1,417 off 19,870   0.07   hit rate 98.5%
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.serving import start_server  # noqa: E402
from tests.server_proc import GEMMA3, SMOLLM2, free_port  # noqa: E402

PEER = Path.home() / ".cache" / "llamacpp-peer" / "build" / "bin" / "llama-server"
OURS = ROOT / ".venv" / "bin" / "llama-server"
MODELS = {"smollm2": SMOLLM2, "gemma3": GEMMA3}
TOPICS = ("lighthouses", "beekeeping", "glaciers", "railways")
QUESTIONS = ("Summarise the notes.", "What is the second point?", "Give one more detail.", "Why does it matter?",
             "Who would care?", "Say it in one line.", "What is missing?", "Any last word?")


def document(topic: str, n_lines: int = 40) -> str:
    """A distinct opening document per conversation, about 15 tokens a line."""
    return "\n".join(f"Note {i} on {topic}: entry number {i * 7 + len(topic)} records the {topic} "
                     f"observation taken in week {i} of the survey." for i in range(n_lines))


def turn(client: httpx.Client, messages: list[dict], cache: bool) -> tuple[float, str, dict]:
    """One streamed chat turn: (time to first content token in s, answer, timings)."""
    body = {"messages": messages, "max_tokens": 16, "temperature": 0, "stream": True, "cache_prompt": cache,
            "timings_per_token": False}
    t0 = time.perf_counter()
    ttft, text, timings = None, [], {}
    # a connection per turn: llama-server drops a kept-alive connection after a long stream
    with client.stream("POST", "/v1/chat/completions", json=body, headers={"Connection": "close"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            for ch in ev.get("choices", []):
                piece = (ch.get("delta") or {}).get("content")
                if piece:
                    ttft = ttft if ttft is not None else time.perf_counter() - t0
                    text.append(piece)
            timings = ev.get("timings", timings)
    return (ttft if ttft is not None else time.perf_counter() - t0), "".join(text), timings


def run(exe: Path, model: Path, turns: int, cache: bool, extra: tuple[str, ...] = ()) -> dict[str, float]:
    port = free_port()
    p = start_server([str(exe), "-m", str(model), "--port", str(port), "-t", "2", "-np", "2", "-c", "16384", *extra],
                     port)
    try:
        chats = [[{"role": "system", "content": f"Answer from these notes.\n{document(t)}"}] for t in TOPICS]
        ttfts, cached, prompt = [], 0, 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            for i in range(turns):
                for msgs in chats:
                    msgs.append({"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]})
                    ttft, answer, timings = turn(client, msgs, cache)
                    msgs.append({"role": "assistant", "content": answer})
                    if i:  # a returning turn
                        ttfts.append(ttft)
                        cached += timings.get("cache_n", 0)
                        prompt += timings.get("cache_n", 0) + timings.get("prompt_n", 0)
        return {"ttft_ms": 1000 * statistics.median(ttfts), "hit": cached / prompt if prompt else 0.0}
    finally:
        p.terminate()
        p.wait(30)


def shared(exe: Path, model: Path, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Two users with one system prompt at once on -np 2 (defaults otherwise), once per topic: a
    first request leaves the prompt in one slot, then a pair arrives together and one of them lands
    on the other slot. The median over topics of the slower first token of each pair, and of the
    prompt tokens that pair's cold-slot request took from a cache."""
    port = free_port()
    p = start_server([str(exe), "-m", str(model), "--port", str(port), "-t", "2", "-np", "2", "-c", "16384", *extra],
                     port)
    try:
        slow, hits = [], []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            for topic in TOPICS:
                system = {"role": "system", "content": f"Answer from these notes.\n{document(topic)}"}
                turn(client, [system, {"role": "user", "content": QUESTIONS[0]}], True)
                with ThreadPoolExecutor(2) as pool:
                    pair = list(pool.map(lambda q: turn(client, [system, {"role": "user", "content": q}], True),
                                         QUESTIONS[1:3]))
                ttft, _, timings = max(pair, key=lambda r: r[0])
                slow.append(ttft)
                hits.append(timings.get("cache_n", 0) / max(1, timings.get("cache_n", 0) + timings.get("prompt_n", 0)))
        return {"ttft_ms": 1000 * statistics.median(slow), "hit": statistics.median(hits)}
    finally:
        p.terminate()
        p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", choices=sorted(MODELS))
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--peer", type=Path, default=PEER, help="llama.cpp's llama-server binary")
    ap.add_argument("--scenario", default="both", choices=("alternating", "shared", "both"))
    ap.add_argument("--peer-arg", action="append", default=[], help="an extra llama-server argument (repeat; "
                    "e.g. --peer-arg=-nr where its AMX repacking crashes)")
    args = ap.parse_args()
    if not args.peer.exists():
        sys.exit(f"no llama-server at {args.peer}: build it with ../shared/tools/build-llama-server")
    if args.scenario != "shared":
        alternating(args)
    if args.scenario != "alternating":
        shared_table(args)


def alternating(args) -> None:
    print(f"{args.model}: 4 conversations alternating on -np 2, {args.turns} turns, returning turns only")
    print(f"{'server':13s} {'TTFT on ms':>11s} {'TTFT off ms':>12s} {'on/off':>7s} {'hit rate':>9s}")
    for name, exe in (("llamajit", OURS), ("llama-server", args.peer)):
        extra = tuple(args.peer_arg) if exe == args.peer else ()
        on = run(exe, MODELS[args.model], args.turns, True, extra)
        off = run(exe, MODELS[args.model], args.turns, False, extra)
        print(f"{name:13s} {on['ttft_ms']:11.1f} {off['ttft_ms']:12.1f} {on['ttft_ms'] / off['ttft_ms']:7.2f} "
              f"{on['hit']:9.1%}", flush=True)


def shared_table(args) -> None:
    print(f"\n{args.model}: one system prompt, two users at once on -np 2 (the slower first token of each pair)")
    print(f"{'server':13s} {'TTFT ms':>9s} {'hit rate':>9s}")
    got = {}
    for name, exe in (("llamajit", OURS), ("llama-server", args.peer)):
        got[name] = shared(exe, MODELS[args.model], tuple(args.peer_arg) if exe == args.peer else ())
        print(f"{name:13s} {got[name]['ttft_ms']:9.1f} {got[name]['hit']:9.1%}", flush=True)
    print(f"llamajit / llama-server TTFT: {got['llamajit']['ttft_ms'] / got['llama-server']['ttft_ms']:.2f}")


if __name__ == "__main__":
    main()
