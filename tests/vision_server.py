"""What the vision server tests share (tests/test_http_vision.py, the gemma3 projector, and
tests/test_http_vision_mlp.py, the mlp one): a server on Gemma 3 270M with a projector, and the requests
of a recorded case (the fixture of tests/fixtures/record_vision.py or record_vision_mlp.py) with their
per-position top logprobs, in the fixture's [[id or piece, logprob] x 5] form."""

from __future__ import annotations

from pathlib import Path

from tests.server_proc import GEMMA3, ServerProcess


def serve(mm: Path, fix: dict) -> ServerProcess:
    """A server on Gemma 3 with projector mm, the recording's flags and media marker (started: wait_ready()
    and stop() are the caller's)."""
    return ServerProcess("--mmproj", str(mm), "-c", "1024", "-np", "1", "--chat-template", "chatml", model=GEMMA3,
                         env={"LLAMA_MEDIA_MARKER": fix["marker"]})


def check_modalities(server: ServerProcess, fix: dict) -> None:
    """/props and /v1/models say vision, as llama-server's did when the fixture was recorded."""
    c = server.client()
    props = c.get("/props").json()
    assert props["modalities"]["vision"] is True and fix["modalities"]["vision"] is True
    assert props["media_marker"] == fix["marker"]
    m = c.get("/v1/models").json()
    assert m["models"][0]["capabilities"] == fix["models_capabilities"] == ["completion", "multimodal"]
    assert m["data"][0]["architecture"]["input_modalities"] == ["text", "image"]


def complete(s: ServerProcess, fix: dict, case: dict) -> dict:
    """A /completion case as recorded (multimodal_data, 8 greedy tokens, top 5), asserted 200, as JSON."""
    body = {"prompt": {"prompt_string": case["prompt"], "multimodal_data": [fix["images"][n] for n in case["images"]]},
            "n_predict": 8, "temperature": 0, "n_probs": 5, "return_tokens": True, "cache_prompt": False}
    r = s.client().post("/completion", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def top(r: dict) -> list:
    """A /completion answer's top logprobs per position."""
    return [[[t["id"], t["logprob"]] for t in p["top_logprobs"]] for p in r["completion_probabilities"]]


def openai_chat(server: ServerProcess, fix: dict, case: dict) -> tuple[int, list]:
    """A chat case as recorded, through the OpenAI client: (prompt tokens, top logprobs per position)."""
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="none")
    name = case["images"][0]
    url = f"data:image/{'jpeg' if name.startswith('jpg') else 'png'};base64,{fix['images'][name]}"
    r = client.chat.completions.create(
        model="m", max_tokens=8, temperature=0, logprobs=True, top_logprobs=5,
        messages=[{"role": "user", "content": [{"type": "text", "text": case["prompt"]},
                                               {"type": "image_url", "image_url": {"url": url}}]}])
    return r.usage.prompt_tokens, [[[t.token, t.logprob] for t in p.top_logprobs] for p in r.choices[0].logprobs.content]
