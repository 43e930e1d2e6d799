"""The Web UI (service/api/webui.py, the page in service/webui/): its files over plain HTTP, then
the page itself driven in a real headless browser (Debian's chromium and chromium-driver, through
selenium; `make tools` installs them where apt-get is available, and those tests skip without).

WEBUI_SCREENSHOT=docs/webui.png makes the streaming test save its page there (README's picture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import httpx
import pytest

from service.api.webui import ASSETS
from tests.server_proc import ROOT, ServerProcess

KEY = "sk-webui-test-5c2e"
PROMPT = "Write a python function that adds two numbers."


@pytest.fixture(scope="module")
def server():
    s = ServerProcess("-c", "4096", "-np", "2").wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def keyed():
    s = ServerProcess("-c", "1024", "-np", "1", "--api-key", KEY).wait_ready()
    yield s
    s.stop()


# -- plain HTTP ------------------------------------------------------------------------------------

def test_root_is_the_chat_page_and_every_asset_is_served(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text.startswith("<!doctype html>") and '<script type="module" src="app.js">' in r.text
    assert r.headers["cache-control"] == "no-cache"
    assert httpx.get(server.url + "/index.html").content == r.content
    for name in ("app.js", "api.js", "render.js", "store.js", "style.css", "vendor/marked.min.js",
                 "vendor/purify.min.js", "sw.js", "manifest.webmanifest", "_app/version.json"):
        assert name in ASSETS
        r = httpx.get(f"{server.url}/{name}")
        assert r.status_code == 200 and r.content == (ROOT / "service/webui" / name).read_bytes(), name
    assert httpx.get(server.url + "/app.js").headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("path", ["/nope.js", "/../pyproject.toml", "/%2e%2e/pyproject.toml", "/vendor/../../args.py"])
def test_unknown_or_outside_paths_are_404(server, path):
    with httpx.Client() as c:  # the raw path, not one httpx normalized
        r = c.send(c.build_request("GET", server.url + "/", extensions={"target": path.encode()}))
    assert r.status_code == 404 and r.json() == {"error": {"code": 404, "message": "File Not Found",
                                                          "type": "not_found_error"}}


def test_assets_are_public_under_api_key_and_the_api_is_not(keyed):
    # llama.cpp's test_access_static_assets_without_api_key asks these four
    for path in ["/", "/index.html", "/app.js", "/vendor/purify.min.js", "/sw.js", "/manifest.webmanifest",
                 "/_app/version.json"]:
        assert httpx.get(keyed.url + path).status_code == 200, path
    assert httpx.get(keyed.url + "/props").status_code == 401
    assert httpx.get(keyed.url + "/not-an-asset.js").status_code == 401  # not public: the key comes first
    assert httpx.get(keyed.url + "/props", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_no_webui_is_404_and_sw_removes_itself():
    s = ServerProcess("-c", "256", "-np", "1", "--no-webui").wait_ready()
    try:
        for path in ("/", "/index.html", "/app.js"):
            r = httpx.get(s.url + path)
            assert r.status_code == 404 and r.json()["error"]["message"] == "File Not Found", path
        assert "unregister()" in httpx.get(s.url + "/sw.js").text  # an old worker's update check
    finally:
        s.stop()


def test_path_serves_that_directory(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><p>mine</p>")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.css").write_text("p{}")
    s = ServerProcess("-c", "256", "-np", "1", env={"LLAMA_ARG_STATIC_PATH": str(tmp_path)}).wait_ready()
    try:
        assert httpx.get(s.url + "/").text == "<!doctype html><p>mine</p>"
        r = httpx.get(s.url + "/sub/a.css")
        assert r.text == "p{}" and r.headers["content-type"].startswith("text/css")
        assert httpx.get(s.url + "/app.js").status_code == 404  # the built-in UI is not mixed in
        assert "unregister()" in httpx.get(s.url + "/sw.js").text  # DIR has none
    finally:
        s.stop()


def test_missing_path_is_refused_at_start(tmp_path):
    s = ServerProcess("--path", str(tmp_path / "absent"))
    assert s.proc.wait(60) == 2 and "not a directory" in s.output()


# -- in a browser ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver, "
                    "or `make tools`)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,760"):
        opts.add_argument(a)  # (--no-sandbox: tests may run as root, where the sandbox refuses)
    d = webdriver.Chrome(options=opts, service=Service(driver))
    yield d
    d.quit()


def js(d, script, *args):
    return d.execute_script(script, *args)


def until(d, cond, timeout=90.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; page state {js(d, 'return document.body.dataset.state')}")


def state(d):
    return js(d, "return document.body.dataset.state")


def reply(d) -> str:
    return js(d, "const m = document.querySelectorAll('.msg.assistant .body');"
                 "return m.length ? m[m.length - 1].innerText : ''")


def open_page(d, url, *, fresh=True, settings=None):
    """Load the page (fresh: with empty localStorage); settings are typed into the Settings panel."""
    d.get(url + "/")
    if fresh:
        js(d, "localStorage.clear()")
        d.refresh()
    until(d, lambda: state(d) == "idle", what="the page to load /props")
    # every request body the page sends, for the tests to read
    js(d, "window.__bodies = []; const f = window.fetch; window.fetch = (u, i) => "
          "{ if (i && i.body) __bodies.push(JSON.parse(i.body)); return f(u, i); }")
    if settings:
        d.find_element("id", "settings-btn").click()
        for name, value in settings.items():
            box = d.find_element("id", f"s-{name}")
            box.clear()
            box.send_keys(str(value))


def send(d, text):
    box = d.find_element("id", "input")
    box.send_keys(text)
    d.find_element("id", "send").click()


def test_streams_a_reply_token_by_token(browser, server):
    d = browser
    open_page(d, server.url, settings={"system": "You are a helpful coder.", "temperature": 0, "max_tokens": 48})
    assert d.find_element("id", "model").text == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert d.find_element("id", "ctx").text == "context 2048 tokens"
    assert not d.find_element("id", "attach").is_displayed()  # no vision: no image button
    send(d, PROMPT)
    seen = []  # the reply's lengths while the page says it is streaming
    until(d, lambda: state(d) == "streaming", 10, "the stream to start")
    while state(d) == "streaming":
        n = len(reply(d))
        if n and (not seen or n != seen[-1]):
            seen.append(n)
        time.sleep(0.05)
    # three different lengths seen before the end: it grew across polls (not always by appending
    # characters: a code fence, once closed, renders without its backticks)
    assert len(seen) >= 3 and seen[-1] > seen[0], seen
    body = js(d, "return __bodies[__bodies.length - 1]")
    assert body["stream"] is True and body["temperature"] == 0 and body["max_tokens"] == 48
    assert body["messages"] == [{"role": "system", "content": "You are a helpful coder."},
                                {"role": "user", "content": PROMPT}]
    speed = d.find_element("css selector", ".msg.assistant .speed").text
    m = re.fullmatch(r"(\d+) tokens, [\d.]+ tokens/s", speed)
    assert m and 1 <= int(m[1]) <= 48, speed  # from the final chunk's timings
    if os.environ.get("WEBUI_SCREENSHOT"):
        d.save_screenshot(os.environ["WEBUI_SCREENSHOT"])


def test_stop_ends_the_reply_and_the_request(browser, server):
    d = browser
    open_page(d, server.url, settings={"temperature": 0, "max_tokens": 1500})
    send(d, "Count from 1 to 1000, one number per line.")
    until(d, lambda: len(reply(d)) > 20, what="some reply text")
    d.find_element("id", "send").click()  # the button reads Stop while streaming
    until(d, lambda: state(d) == "idle", 10, "the page to be ready again")
    stopped = reply(d)
    time.sleep(1.5)
    assert reply(d) == stopped  # no more text
    assert "stopped" in d.find_element("css selector", ".msg.assistant .meta").text
    assert d.find_element("id", "send").text == "Send"
    # the server saw the client go: no slot still generating
    until(d, lambda: not any(s["is_processing"] for s in httpx.get(server.url + "/slots").json()), 10,
          "the slot to be freed")
    d.find_element("css selector", ".msg.assistant .regenerate").click()  # and regenerate works after it
    until(d, lambda: state(d) == "streaming", 10, "regenerate to start")
    d.find_element("id", "send").click()
    until(d, lambda: state(d) == "idle", 10, "the second stop")
    assert len(js(d, "return __bodies")) == 2 and len(d.find_elements("css selector", ".msg.assistant")) == 1


def test_conversation_survives_a_reload(browser, server):
    d = browser
    open_page(d, server.url, settings={"temperature": 0, "max_tokens": 12})
    send(d, "Name a color.")
    until(d, lambda: state(d) == "idle" and reply(d), what="the reply")
    before = reply(d)
    d.refresh()
    until(d, lambda: state(d) == "idle", what="the reloaded page")
    assert reply(d) == before
    assert d.find_element("css selector", ".msg.user .body").text == "Name a color."
    assert d.find_element("css selector", "#conversations li.current").text.startswith("Name a color.")
    assert d.find_element("id", "s-max_tokens").get_attribute("value") == "12"  # settings too


def test_html_in_a_reply_is_shown_as_text_never_run(browser, server):
    # A stopped reply holding HTML and markdown, then Continue: the request ends with that
    # assistant message, the model continues it (assistant prefill) and the whole reply is
    # rendered again from the stream, through the same markdown path.
    d = browser
    open_page(d, server.url)
    evil = '<img src=x onerror="window.__xss = 1"> and **bold**\n\n```python\nprint(1)\n```\n'
    conv = {"id": "c1", "title": "xss", "updated": 1, "messages": [
        {"role": "user", "content": "Say hi"}, {"role": "assistant", "content": evil, "stopped": True}]}
    js(d, "localStorage.setItem('llamajit.conversations', arguments[0]);"
          "localStorage.setItem('llamajit.current', '\"c1\"');"
          "localStorage.setItem('llamajit.settings', '{\"max_tokens\": \"8\", \"temperature\": \"0\"}')",
       json.dumps([conv]))
    open_page(d, server.url, fresh=False)
    d.find_element("css selector", ".msg.assistant .continue").click()
    until(d, lambda: state(d) == "idle" and js(d, "return __bodies.length") == 1, what="the continued reply")
    assert js(d, "return __bodies[0].messages.at(-1)") == {"role": "assistant", "content": evil}
    text = reply(d)
    assert text.startswith('<img src=x onerror="window.__xss = 1"> and bold'), text  # visible, as text
    assert "stopped" not in d.find_element("css selector", ".msg.assistant .meta").text
    assert len(text) > len('<img src=x onerror="window.__xss = 1"> and bold\nprint(1)'), text  # continued
    assert js(d, "return window.__xss") is None
    assert not d.find_elements("css selector", "#messages img, #messages [onerror]")
    assert d.find_element("css selector", ".msg.assistant strong").text == "bold"  # markdown still renders
    assert d.find_element("css selector", ".msg.assistant pre code.language-python").text == "print(1)"


def test_api_key_is_asked_for_kept_and_sent(browser, keyed):
    d = browser
    d.get(keyed.url + "/")
    js(d, "localStorage.clear()")
    d.refresh()
    dialog = until(d, lambda: d.find_element("id", "key-dialog").get_attribute("open") is not None and
                   d.find_element("id", "key-dialog"), 30, "the key prompt")
    d.find_element("id", "key-input").send_keys("wrong-key")
    d.find_element("id", "key-ok").click()
    until(d, lambda: "refused" in d.find_element("id", "key-msg").text, 10, "the wrong key to be refused")
    d.find_element("id", "key-input").send_keys(KEY)
    d.find_element("id", "key-ok").click()
    until(d, lambda: state(d) == "idle", 30, "the page to load /props with the key")
    assert dialog.get_attribute("open") is None
    assert js(d, "return localStorage.getItem('llamajit.apiKey')") == KEY
    d.find_element("id", "settings-btn").click()
    d.find_element("id", "s-max_tokens").send_keys("6")
    send(d, "Hi")
    until(d, lambda: state(d) == "idle" and reply(d), 60, "the reply")
    assert "error" not in d.find_element("css selector", ".msg.assistant .meta").text
    d.refresh()  # the kept key is sent at once: no prompt this time
    until(d, lambda: state(d) == "idle", 30, "the reloaded page")
    assert d.find_element("id", "key-dialog").get_attribute("open") is None


def test_a_router_serves_the_page_with_a_model_picker(browser, tmp_path):
    """Router mode: the same page, a picker of GET /models, and the chosen model named in the chat."""
    from tests.server_proc import GEMMA3, SMOLLM2

    (tmp_path / "models").mkdir()
    os.symlink(SMOLLM2, tmp_path / "models" / "smol.gguf")
    os.symlink(GEMMA3, tmp_path / "models" / "gemma.gguf")
    s = ServerProcess("--models-dir", str(tmp_path / "models"), "-c", "512", "-np", "1", model=None,
                      env={"LLAMA_CACHE": str(tmp_path / "cache")}).wait_ready()
    try:
        r = httpx.get(s.url + "/")
        assert r.status_code == 200 and r.content == (ROOT / "service/webui/index.html").read_bytes()
        assert httpx.get(s.url + "/nope.js").status_code == 404
        d = browser
        open_page(d, s.url, settings={"temperature": 0, "max_tokens": 8})
        options = js(d, "return [...document.querySelectorAll('#model-select option')].map(o => o.value)")
        assert options == ["gemma", "smol"] and not d.find_element("id", "model").is_displayed()
        js(d, "const s = document.getElementById('model-select'); s.value = 'smol';"
              "s.dispatchEvent(new Event('change'))")
        send(d, "Hi")
        until(d, lambda: state(d) == "streaming", 60, "the stream to start")
        until(d, lambda: state(d) == "idle", 120, "the reply to end")
        assert reply(d) and js(d, "return __bodies[__bodies.length - 1]")["model"] == "smol"
        listed = {m["id"]: m["status"]["value"] for m in httpx.get(s.url + "/models").json()["data"]}
        assert listed == {"smol": "loaded", "gemma": "unloaded"}
        d.refresh()  # the choice is kept
        until(d, lambda: state(d) == "idle", what="the page to load")
        assert js(d, "return document.getElementById('model-select').value") == "smol"
    finally:
        s.stop()
