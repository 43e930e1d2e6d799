"""Router mode through the running server: llama-server started without a model, both real
models and a broken GGUF in one --models-dir, each model in its own child server."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest

from tests.server_proc import GEMMA3, ROOT, SMOLLM2, ServerProcess

REF = ROOT.parent / "shared" / "reference"


def _ids(ref: str, text: str) -> list[int]:
    """llama.cpp's token ids for `text` (no special tokens added): tells which model answered."""
    for line in open(REF / ref):
        row = json.loads(line)
        if row["text"] == text and not row["add_special"] and not row["parse_special"]:
            return row["ids"]
    raise KeyError(text)


TEXT = "Hello world"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    os.symlink(SMOLLM2, d / "smol.gguf")
    os.symlink(GEMMA3, d / "gemma.gguf")
    (d / "broken.gguf").write_bytes(b"GGUF" + b"\x00" * 60)  # a header and nothing else
    (d / "mmproj-smol.gguf").write_bytes(b"")  # a companion file is no model
    return d


def router(models_dir, *args, env=None) -> ServerProcess:
    srv = ServerProcess("--models-dir", str(models_dir), "-c", "512", "-np", "1", *args, model=None, env=env)
    srv.wait_ready(60)
    return srv


@pytest.fixture(scope="module")
def one(models_dir):
    srv = router(models_dir, "--models-max", "1", "--metrics")  # the flags pass on to every model
    yield srv
    srv.stop()


def status(c: httpx.Client, name: str) -> dict:
    return next(m for m in c.get("/models").json()["data"] if m["id"] == name)["status"]


def wait_status(c: httpx.Client, name: str, value: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = status(c, name)
        if s["value"] == value:
            return s
        time.sleep(0.05)
    raise AssertionError(f"{name} never {value}: {s}")


def tokenize(c: httpx.Client, name: str, **params) -> httpx.Response:
    return c.post("/tokenize", json={"model": name, "content": TEXT}, params=params)


def test_lists_every_model_and_answers_as_a_router(one):
    with one.client() as c:
        assert c.get("/health").json() == {"status": "ok"}
        listed = c.get("/v1/models").json()
        assert listed["object"] == "list"
        assert sorted(m["id"] for m in listed["data"]) == ["broken", "gemma", "smol"]
        for m in listed["data"]:
            assert m["status"]["value"] == "unloaded" and m["source"] == "models_dir" and m["can_remove"] is False
            assert m["object"] == "model" and m["owned_by"] == "llamacpp"
        props = c.get("/props").json()
        assert props["role"] == "router" and props["max_instances"] == 1 and props["models_autoload"] is True


def test_routes_by_model_and_evicts_the_least_recently_used(one):
    with one.client() as c:
        r = tokenize(c, "smol")
        assert r.status_code == 200 and r.json()["tokens"] == _ids("smollm2_tokenize.jsonl", TEXT)
        assert status(c, "smol")["value"] == "loaded"
        args = status(c, "smol")["args"]
        assert args[:2] == ["llama-server", "-m"] and args[2].endswith("smol.gguf")
        assert args[args.index("--alias") + 1] == "smol" and args[args.index("-c") + 1] == "512"
        r = tokenize(c, "gemma")  # --models-max 1: smol goes to make room
        assert r.status_code == 200 and r.json()["tokens"] == _ids("gemma3_tokenize.jsonl", TEXT)
        assert status(c, "gemma")["value"] == "loaded"
        wait_status(c, "smol", "unloaded")
        # a GET route is routed by ?model=, and the model's own answer comes back
        props = c.get("/props", params={"model": "gemma"}).json()
        assert props["model_alias"] == "gemma" and props["default_generation_settings"]["n_ctx"] == 512
        assert c.get("/metrics", params={"model": "gemma"}).text.count("llamacpp:") > 5


def test_client_mistakes_get_llama_servers_errors(one):
    with one.client() as c:
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and r.json()["error"]["message"] == "model name is missing from the request"
        r = c.post("/v1/chat/completions", json={"model": "nope", "messages": []})
        assert r.status_code == 400 and r.json()["error"] == {
            "code": 400, "message": "model 'nope' not found", "type": "invalid_request_error"}
        assert c.get("/metrics").status_code == 400
        assert c.post("/completion", content=b"{not json").status_code == 400
        assert c.post("/models/load", json={"model": "nope"}).status_code == 404
        assert c.post("/models/unload", json={"model": "broken"}).json()["error"]["message"] == "model is not running"
        assert c.get("/no-such-route").status_code == 404
        r = c.post("/models", json={"model": "user/repo:Q4_0"})
        assert r.status_code == 501 and r.json()["error"]["type"] == "not_supported_error"
        r = c.delete("/models", params={"model": "smol"})
        assert r.status_code == 400 and r.json()["error"]["message"] == "model name=smol is not removable (not from cache)"
        assert c.delete("/models", params={"model": "nope"}).status_code == 404
        assert c.delete("/models").status_code == 400


def test_a_broken_model_is_reported_failed_and_the_others_serve(one):
    with one.client() as c:
        r = tokenize(c, "broken")
        assert r.status_code == 500 and r.json()["error"]["message"] == "model name=broken failed to load"
        s = status(c, "broken")
        assert s["value"] == "unloaded" and s["failed"] is True and s["exit_code"] == 1
        r = tokenize(c, "smol")
        assert r.status_code == 200 and r.json()["tokens"] == _ids("smollm2_tokenize.jsonl", TEXT)
        assert "failed" not in status(c, "smol")


def test_load_unload_and_events(one):
    with one.client() as c:
        events: list[dict] = []
        subscribed = threading.Event()

        def listen():
            with httpx.stream("GET", one.url + "/models/sse", timeout=120) as r:
                subscribed.set()
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                    if any(e["model"] == "gemma" and e["data"]["status"] == "unloaded" for e in events):
                        return

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        assert subscribed.wait(10)
        if status(c, "gemma")["value"] != "unloaded":
            c.post("/models/unload", json={"model": "gemma"})
            wait_status(c, "gemma", "unloaded")
        assert c.post("/models/load", json={"model": "gemma"}).json() == {"success": True}
        wait_status(c, "gemma", "loaded")
        r = c.post("/models/load", json={"model": "gemma"})
        assert r.status_code == 400 and r.json()["error"]["message"] == "model is already running"
        assert c.post("/models/unload", json={"model": "gemma"}).json() == {"success": True}
        wait_status(c, "gemma", "unloaded")
        t.join(30)
        seen = [e["data"]["status"] for e in events if e["model"] == "gemma" and e["event"] == "model_status"]
        assert seen[-3:] == ["loading", "loaded", "unloaded"], events
        loaded = next(e for e in events if e["model"] == "gemma" and e["data"]["status"] == "loaded")
        assert loaded["data"]["info"]["id"] == "gemma"


def test_a_model_never_unloads_under_a_running_request(one):
    """--models-max 1: a request for gemma waits for smol's stream to finish before smol goes."""
    with one.client() as c:
        assert tokenize(c, "smol").status_code == 200
        chunks: list[dict] = []

        def stream():
            with httpx.stream("POST", one.url + "/completion", timeout=120, json={
                    "model": "smol", "prompt": "Once upon a time", "n_predict": 48, "stream": True}) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        chunks.append(json.loads(line[6:]))

        t = threading.Thread(target=stream)
        t.start()
        while not chunks:
            time.sleep(0.01)
        r = tokenize(c, "gemma")
        t.join(60)
        assert r.status_code == 200 and r.json()["tokens"] == _ids("gemma3_tokenize.jsonl", TEXT)
        assert chunks[-1]["stop"] is True and chunks[-1]["tokens_predicted"] == 48
        assert status(c, "smol")["value"] == "unloaded"


def test_autoload_off_two_models_at_once_and_the_api_key(models_dir):
    srv = router(models_dir, "--no-models-autoload", "--models-max", "2", "--api-key", "sk-r")
    auth = {"Authorization": "Bearer sk-r"}
    try:
        with srv.client() as c:
            assert c.get("/models").status_code == 200  # public, as in llama-server
            r = c.post("/tokenize", json={"model": "smol", "content": TEXT})
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
            assert c.get("/props", headers=auth).json()["models_autoload"] is False
            r = c.post("/tokenize", json={"model": "smol", "content": TEXT}, headers=auth)
            assert r.status_code == 400 and r.json()["error"]["message"] == "model is not loaded"
            # ?autoload=true overrides the flag for one request
            r = c.post("/tokenize", json={"model": "smol", "content": TEXT}, headers=auth, params={"autoload": "true"})
            assert r.status_code == 200
            assert c.post("/models/load", json={"model": "gemma"}, headers=auth).json() == {"success": True}
            wait_status(c, "gemma", "loaded")
            # concurrent generations on two models: each equals its own single-request answer
            body = {"prompt": "Once upon a time", "n_predict": 24, "temperature": 0}
            alone = {m: c.post("/completion", json={**body, "model": m}, headers=auth).json()["content"]
                     for m in ("smol", "gemma")}
            both: dict[str, str] = {}
            threads = [threading.Thread(target=lambda m=m: both.__setitem__(m, c.post(
                "/completion", json={**body, "model": m}, headers=auth).json()["content"])) for m in ("smol", "gemma")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert both == alone and alone["smol"] != alone["gemma"]
            assert status(c, "smol")["value"] == status(c, "gemma")["value"] == "loaded"
            pids = [p for p in _children(srv.proc.pid)]
            assert len(pids) == 2
    finally:
        assert srv.stop() == 0
    for pid in pids:  # the router took its models down with it
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and "service.cli" in open(f"/proc/{d}/cmdline").read():
                out.append(int(d))
    return out


def test_presets_configure_models_and_reload(models_dir, tmp_path):
    ini = tmp_path / "models.ini"
    ini.write_text("version = 1\n[*]\nc = 256\n\n[tiny]\nmodel = %s\n; a comment\nn-predict = 3\n"
                   "[smol]\nLLAMA_ARG_CTX_SIZE = 384\n" % SMOLLM2)
    srv = ServerProcess("--models-dir", str(models_dir), "--models-preset", str(ini), "-np", "1", model=None)
    srv.wait_ready(60)
    try:
        with srv.client() as c:
            listed = {m["id"]: m for m in c.get("/models").json()["data"]}
            assert listed["tiny"]["source"] == "preset" and listed["smol"]["source"] == "preset"
            assert listed["gemma"]["source"] == "models_dir"
            assert c.get("/props", params={"model": "tiny"}).json()["default_generation_settings"]["n_ctx"] == 256
            r = c.post("/completion", json={"model": "tiny", "prompt": "Once upon a time"})
            assert r.json()["tokens_predicted"] == 3  # the preset's -n
            assert c.get("/props", params={"model": "smol"}).json()["default_generation_settings"]["n_ctx"] == 384
            ini.write_text("[other]\nmodel = %s\n" % GEMMA3)
            ids = {m["id"] for m in c.get("/models", params={"reload": "1"}).json()["data"]}
            assert "other" in ids and "tiny" not in ids and "smol" in ids
    finally:
        srv.stop()


def test_a_bad_preset_or_models_dir_fails_the_start(tmp_path):
    from tests.test_cli import run

    ini = tmp_path / "bad.ini"
    ini.write_text("[m]\nno-such-flag = 1\n")
    out = run("--models-preset", str(ini))
    assert out.returncode == 1 and "[m] no-such-flag: not a llama-server flag" in out.stderr
    out = run("--models-dir", str(tmp_path / "missing"))
    assert out.returncode == 1 and "does not exist or is not a directory" in out.stderr


def test_sleeping_models_and_sigterm_stops_the_router_and_its_models(models_dir):
    srv = router(models_dir, "--models-max", "2", "--sleep-idle-seconds", "1")
    try:
        _sleep_then_stop(srv)
    finally:
        srv.stop()


def _sleep_then_stop(srv):
    with srv.client() as c:
        assert tokenize(c, "smol").status_code == 200
        wait_status(c, "smol", "sleeping", 30)  # --sleep-idle-seconds reaches the model, /models tells
        assert c.get("/props", params={"model": "smol"}).json()["is_sleeping"] is True
        r = c.post("/completion", json={"model": "smol", "prompt": "Once upon a time", "n_predict": 2})
        assert r.status_code == 200 and r.json()["tokens_predicted"] == 2  # (it woke: 1 s later it sleeps again)
    kids = _children(srv.proc.pid)
    assert len(kids) == 1
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(30) == 0
    time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{k}/cmdline") and open(f"/proc/{k}/cmdline").read() for k in kids)


def test_a_cache_model_is_served_and_deleted(tmp_path):
    """The cache as a source (huggingface_hub's layout), and DELETE /models removing its files."""
    from tests.test_router_catalog import fake_cache

    cache = tmp_path / "cache"
    fake_cache(cache, "me/smol-GGUF", ["smol-Q4_1.gguf"])
    link = next((cache / "models--me--smol-GGUF" / "snapshots").rglob("*.gguf"))
    blob = link.resolve()
    blob.unlink()
    blob.symlink_to(SMOLLM2)  # the blob is the real model (a link to it: deleting it leaves the model)
    srv = ServerProcess("-c", "512", "-np", "1", model=None, env={"LLAMA_CACHE": str(cache)})
    srv.wait_ready(60)
    try:
        with srv.client() as c:
            listed = {m["id"]: m for m in c.get("/models").json()["data"]}
            assert list(listed) == ["me/smol-GGUF:Q4_1"]
            assert listed["me/smol-GGUF:Q4_1"]["source"] == "cache" and listed["me/smol-GGUF:Q4_1"]["can_remove"]
            r = tokenize(c, "me/smol-GGUF:Q4_1")
            assert r.status_code == 200 and r.json()["tokens"] == _ids("smollm2_tokenize.jsonl", TEXT)
            r = c.delete("/models", params={"model": "me/smol-GGUF:Q4_1"})  # running: stopped, then removed
            assert r.status_code == 200 and r.json() == {"success": True}
            assert c.get("/models").json()["data"] == []
            assert not os.path.lexists(link) and not os.path.lexists(blob) and SMOLLM2.exists()
            assert tokenize(c, "me/smol-GGUF:Q4_1").status_code == 400
            assert _children(srv.proc.pid) == []
    finally:
        srv.stop()
