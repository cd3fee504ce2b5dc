// The live page: the server sends the rendered panel on every change of the payment (SSE);
// this only swaps it in. No card data ever reaches the browser.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  const offline = document.getElementById("offline");
  if (!live || !window.EventSource) return;
  const source = new EventSource(live.dataset.src);
  source.addEventListener("payment", (event) => {
    live.innerHTML = event.data;
    offline.hidden = true;
  });
  source.addEventListener("open", () => { offline.hidden = true; });
  source.addEventListener("error", () => { offline.hidden = false; });
});
