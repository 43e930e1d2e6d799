// Conversations and settings, kept in the browser's localStorage so that they survive a reload;
// the server keeps nothing between requests. Each save writes a whole list as one JSON value:
// a few chats of text are small, and one value is never half-written.

const CONVERSATIONS = "llamajit.conversations";
const CURRENT = "llamajit.current";
const SETTINGS = "llamajit.settings";

// The sampling settings the page sends; "" means "not sent": the server's default applies.
export const SETTING_NAMES = ["system", "temperature", "top_p", "top_k", "max_tokens"];

function load(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback; // a value another version (or a person) wrote: start over rather than fail
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch (e) {
    console.warn("localStorage:", e); // full or disabled: the chat goes on, unsaved
  }
}

export function loadConversations() {
  const list = load(CONVERSATIONS, []);
  return Array.isArray(list) ? list.filter((c) => c && Array.isArray(c.messages)) : [];
}

export function saveConversations(list, current) {
  store(CONVERSATIONS, list);
  store(CURRENT, current ? current.id : null);
}

export function currentId() {
  return load(CURRENT, null);
}

export function newConversation() {
  // Not crypto.randomUUID: it exists only in secure contexts, and a server on a LAN is plain http.
  const id = Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  return { id, title: "New chat", messages: [], updated: Date.now() };
}

export function loadSettings() {
  const saved = load(SETTINGS, {});
  return Object.fromEntries(SETTING_NAMES.map((n) => [n, typeof saved[n] === "string" ? saved[n] : ""]));
}

export function saveSettings(settings) {
  store(SETTINGS, settings);
}
