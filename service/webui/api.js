// The page's requests: the API key, /props, and chat completions streamed as server-sent events.
// URLs are relative ("props", not "/props"), so the page also works under --api-prefix.

const KEY = "llamajit.apiKey";
let asking = null; // the open key prompt: requests that get 401 together wait on one dialog

// Shows the key dialog; resolves with the key given, or null when cancelled.
export function askKey(message = "This server needs an API key.") {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const dialog = document.getElementById("key-dialog");
    const input = document.getElementById("key-input");
    document.getElementById("key-msg").textContent = message;
    input.value = "";
    document.getElementById("key-cancel").onclick = () => dialog.close("cancel");
    dialog.addEventListener("close", () => {
      asking = null;
      const key = input.value.trim();
      resolve(dialog.returnValue === "ok" && key ? key : null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
  return asking;
}

export function setKey(key) {
  localStorage.setItem(KEY, key);
}

// fetch with `Authorization: Bearer KEY` once a key is known. On 401 (no key yet, or a wrong
// one) it asks for the key, keeps it in localStorage and tries again; cancelled, the 401 is returned.
export async function apiFetch(path, init = {}) {
  for (;;) {
    const key = localStorage.getItem(KEY);
    const headers = { ...init.headers };
    if (key) headers.Authorization = `Bearer ${key}`;
    const res = await fetch(path, { ...init, headers });
    if (res.status !== 401) return res;
    const given = await askKey(key ? "The server refused this API key. Enter the right one:" : undefined);
    if (given === null) return res;
    setKey(given);
  }
}

// The server's error message, from llama-server's {"error": {"message": ...}} body when there is one.
async function failure(res) {
  let message = res.statusText;
  try {
    message = (await res.json()).error.message || message;
  } catch { /* not JSON: the status text says enough */ }
  const err = new Error(`${res.status}: ${message}`);
  err.status = res.status;
  return err;
}

export async function getProps() {
  const res = await apiFetch("props");
  if (!res.ok) throw await failure(res);
  return res.json();
}

// A router's models (GET /models): [{id, status: {value}}], in the server's order.
export async function getModels() {
  const res = await apiFetch("models");
  if (!res.ok) throw await failure(res);
  return (await res.json()).data || [];
}

// Each `data:` object of an SSE body, until [DONE]. Other lines (": ping" comments) are skipped;
// an error event (llama-server's `data: {"error": ...}`, or an older `error:` field) throws.
async function* events(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      for (const line of block.split("\n")) {
        const field = line.slice(0, line.indexOf(":"));
        if (field !== "data" && field !== "error") continue;
        const data = line.slice(field.length + 1).trim();
        if (data === "[DONE]") return;
        const obj = JSON.parse(data);
        if (field === "error" || obj.error) throw new Error((obj.error || obj).message || "stream error");
        yield obj;
      }
    }
  }
}

// POST /v1/chat/completions with stream: true; the result yields the chunks as they arrive.
// `signal` aborts the request (the stop button): the server sees the client go and ends the task.
export async function streamChat(body, signal) {
  const res = await apiFetch("v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!res.ok) throw await failure(res);
  return events(res);
}
