// Markdown to HTML that is safe to insert. A reply is whatever the model wrote (or a prompt made
// it write), so three lines of defence: raw HTML in the markdown is shown as text (marked's
// `html` tokens, block and inline, are escaped); DOMPurify removes whatever unsafe markup is left
// in marked's output (javascript: links, event attributes); and index.html's Content-Security-
// Policy runs no inline script or handler should something slip through both.
// marked and DOMPurify are the vendored globals loaded by index.html before this module.

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ENTITIES[c]);

const md = new marked.Marked({
  gfm: true,
  breaks: true, // a chat reply's single newlines are meant as line breaks
  renderer: {
    html: ({ text }) => escapeHtml(text),
  },
});

export function renderMarkdown(text) {
  return DOMPurify.sanitize(md.parse(text || ""));
}
