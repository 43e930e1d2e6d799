// The chat page: conversations, streaming replies, stop / regenerate / continue, settings.
// body[data-state] is "loading" (waiting for /props), "idle" or "streaming": the stylesheet and
// the browser tests read it.

import { askKey, getModels, getProps, setKey, streamChat } from "./api.js";
import { renderMarkdown } from "./render.js";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);
const conversations = store.loadConversations();
let conv = conversations.find((c) => c.id === store.currentId()) || null;
const settings = store.loadSettings();
let controller = null; // the running request's AbortController: stop aborts it
let images = []; // data: URLs attached to the next message (vision models only)
let needKey = false; // /props got 401 and the key prompt was cancelled: the Key button retries

function setState(state) {
  document.body.dataset.state = state;
  $("send").textContent = state === "streaming" ? "Stop" : "Send";
}

function setStatus(text) {
  $("status").textContent = text;
}

function save() {
  if (conv) conv.updated = Date.now();
  conversations.sort((a, b) => b.updated - a.updated);
  store.saveConversations(conversations, conv);
}

// -- rendering ---------------------------------------------------------------------------------

function button(label, onclick, className = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = className;
  b.onclick = onclick;
  return b;
}

function renderList() {
  $("conversations").replaceChildren(...conversations.map((c) => {
    const li = document.createElement("li");
    li.className = c === conv ? "current" : "";
    li.append(button(c.title, () => select(c), "title"), button("×", () => remove(c), "delete"));
    li.lastChild.title = "Delete this conversation";
    return li;
  }));
}

function messageEl(m, last) {
  const el = document.createElement("div");
  el.className = `msg ${m.role}`;
  if (m.reasoning) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Thinking";
    const text = document.createElement("div");
    text.textContent = m.reasoning;
    details.append(summary, text);
    el.append(details);
  }
  const body = document.createElement("div");
  body.className = "body";
  if (m.role === "assistant") body.innerHTML = renderMarkdown(m.content); // sanitized: render.js
  else body.textContent = m.content; // the user's own words, shown as typed
  el.append(body);
  for (const url of m.images || []) {
    const img = document.createElement("img");
    img.src = url;
    el.append(img);
  }
  if (m.role !== "assistant") return el;
  const meta = document.createElement("div");
  meta.className = "meta";
  const notes = [];
  if (m.timings) notes.push(`${m.timings.n} tokens, ${m.timings.tps.toFixed(1)} tokens/s`);
  if (m.stopped) notes.push("stopped");
  if (m.error) notes.push(`error: ${m.error}`);
  const info = document.createElement("span");
  info.className = m.timings ? "speed" : "";
  info.textContent = notes.join(" · ");
  meta.append(info);
  if (last && !controller) {
    meta.append(button("Regenerate", regenerate, "regenerate"));
    if (m.stopped && m.content) meta.append(button("Continue", () => generate(true), "continue"));
  }
  el.append(meta);
  return el;
}

function renderMessages() {
  const msgs = conv ? conv.messages : [];
  const box = $("messages");
  if (!msgs.length) {
    const hello = document.createElement("p");
    hello.className = "empty";
    hello.textContent = "Start a conversation below.";
    box.replaceChildren(hello);
  } else {
    box.replaceChildren(...msgs.map((m, i) => messageEl(m, i === msgs.length - 1)));
  }
  box.scrollTop = box.scrollHeight;
  renderList();
}

// While a reply streams only its own element is rebuilt, on each chunk.
function renderLast() {
  const box = $("messages");
  const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 40; // follow unless scrolled up
  box.lastElementChild.replaceWith(messageEl(conv.messages[conv.messages.length - 1], true));
  if (stick) box.scrollTop = box.scrollHeight;
}

// -- conversations ---------------------------------------------------------------------------

function select(c) {
  if (controller) controller.abort();
  conv = c;
  save();
  renderMessages();
}

function remove(c) {
  if (!confirm(`Delete "${c.title}"?`)) return;
  if (c === conv) select(null);
  conversations.splice(conversations.indexOf(c), 1);
  save();
  renderList();
}

// -- requests --------------------------------------------------------------------------------

// The sampling fields set in Settings; empty ones are not sent, so the server's defaults apply.
function sampling() {
  const out = {};
  for (const name of ["temperature", "top_p", "top_k", "max_tokens"]) {
    if (settings[name] !== "" && !Number.isNaN(Number(settings[name]))) out[name] = Number(settings[name]);
  }
  return out;
}

function wire(m) {
  if (!m.images || !m.images.length) return { role: m.role, content: m.content };
  const parts = m.images.map((url) => ({ type: "image_url", image_url: { url } }));
  return { role: m.role, content: [{ type: "text", text: m.content }, ...parts] };
}

// Streams a reply into the conversation. `continuing`: the last message is a stopped assistant
// reply, sent as it is; the server continues it (llama-server's assistant prefill) and its
// chunks are appended to it.
async function generate(continuing = false) {
  const history = conv.messages.filter((m) => m.content || m.images); // drops failed empty replies
  const messages = history.map(wire);
  if (settings.system) messages.unshift({ role: "system", content: settings.system });
  let reply = conv.messages[conv.messages.length - 1];
  if (continuing) {
    reply.stopped = false;
    delete reply.timings;
  } else {
    reply = { role: "assistant", content: "" };
    conv.messages = [...history, reply];
  }
  controller = new AbortController();
  setState("streaming");
  setStatus("");
  save();
  renderMessages();
  try {
    const model = routerModel ? { model: routerModel } : {};
    const chunks = await streamChat({ ...model, messages, ...sampling() }, controller.signal);
    for await (const chunk of chunks) {
      const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
      if (delta.content) reply.content += delta.content;
      if (delta.reasoning_content) reply.reasoning = (reply.reasoning || "") + delta.reasoning_content;
      if (chunk.timings) reply.timings = { n: chunk.timings.predicted_n, tps: chunk.timings.predicted_per_second };
      if (conv && conv.messages[conv.messages.length - 1] === reply) renderLast(); // still on screen
    }
  } catch (e) {
    if (e.name === "AbortError") reply.stopped = true;
    else reply.error = e.message || String(e);
  } finally {
    controller = null;
    setState("idle");
    save();
    renderMessages();
    $("input").focus();
  }
}

function regenerate() {
  conv.messages.pop();
  generate();
}

function send() {
  const text = $("input").value.trim();
  if (!text && !images.length) return;
  if (!conv) {
    conv = store.newConversation();
    conversations.unshift(conv);
  }
  const m = { role: "user", content: text };
  if (images.length) m.images = images;
  conv.messages.push(m);
  if (conv.title === "New chat") conv.title = text.slice(0, 48) || "Image";
  $("input").value = "";
  images = [];
  $("attach").textContent = "Image";
  generate();
}

// -- start -----------------------------------------------------------------------------------

function bindSettings(defaults) {
  const shown = { temperature: defaults.temperature, top_p: defaults.top_p, top_k: defaults.top_k,
                  max_tokens: defaults.n_predict };
  for (const name of store.SETTING_NAMES) {
    const input = $(`s-${name}`);
    input.value = settings[name];
    if (shown[name] !== undefined) input.placeholder = String(+Number(shown[name]).toFixed(3));
    input.oninput = () => {
      settings[name] = input.value;
      store.saveSettings(settings);
    };
  }
}

// Router mode (llama-server started without a model): a picker of GET /models; the choice is
// kept in localStorage and sent as `model` with each chat (the router loads it on demand).
let routerModel = null;
async function pickModel() {
  const models = await getModels();
  const sel = $("model-select");
  const kept = localStorage.getItem("llamajit.model");
  sel.replaceChildren(...models.map((m) => {
    const opt = document.createElement("option");
    opt.value = m.id;
    opt.textContent = `${m.id} (${m.status.value})`;
    return opt;
  }));
  routerModel = models.some((m) => m.id === kept) ? kept : (models[0] && models[0].id) || null;
  sel.value = routerModel || "";
  sel.hidden = false;
  $("model").hidden = true;
  sel.onchange = () => {
    routerModel = sel.value;
    localStorage.setItem("llamajit.model", routerModel);
  };
  if (!models.length) setStatus("This router has no models (--models-dir, --models-preset or the cache).");
}

async function loadProps() {
  setState("loading");
  for (;;) {
    try {
      const props = await getProps();
      if (props.role === "router") await pickModel();  // several models: the request names one
      const gen = props.default_generation_settings || {};
      if (props.role !== "router") $("model").textContent = (props.model_alias || "").split("/").pop() || "llamajit";
      $("ctx").textContent = gen.n_ctx ? `context ${gen.n_ctx} tokens` : "";
      $("attach").hidden = !(props.modalities && props.modalities.vision);
      bindSettings(gen.params || {});
      setStatus("");
      setState("idle");
      return;
    } catch (e) {
      if (e.status === 401) { // the key prompt was cancelled: wait for the Key button
        needKey = true;
        setStatus("This server needs an API key: use the Key button.");
        return;
      }
      setStatus(e.status === 503 ? "Loading the model…" : `Waiting for the server (${e.message})…`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

$("composer").onsubmit = (ev) => {
  ev.preventDefault();
  if (controller) controller.abort();
  else if (document.body.dataset.state === "idle") send();
};
$("input").onkeydown = (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
};
$("new-chat").onclick = () => select(null);
$("settings-btn").onclick = () => {
  $("settings").hidden = !$("settings").hidden;
  $("settings-btn").setAttribute("aria-expanded", String(!$("settings").hidden));
};
$("key-btn").onclick = async () => {
  const key = await askKey("API key for this server:");
  if (key !== null) {
    setKey(key);
    if (needKey) {
      needKey = false;
      loadProps();
    }
  }
};
$("attach").onclick = () => $("file").click();
$("file").onchange = () => {
  for (const file of $("file").files) {
    const reader = new FileReader();
    reader.onload = () => {
      images.push(reader.result);
      $("attach").textContent = `Image (${images.length})`;
    };
    reader.readAsDataURL(file);
  }
  $("file").value = "";
};

renderMessages();
loadProps();
