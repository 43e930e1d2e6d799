// llamajit's UI registers no service worker. This file answers the update check of one that a
// browser may still hold for this origin (llama-server's own UI installs one at /sw.js, which
// would otherwise keep showing that UI from its cache): it unregisters itself, drops the caches
// and reloads the open pages, as llama-server does when its UI is replaced or turned off.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil((async () => {
  await self.registration.unregister();
  for (const key of await caches.keys()) await caches.delete(key);
  for (const c of await self.clients.matchAll({ type: "window" })) c.navigate(c.url);
})()));
