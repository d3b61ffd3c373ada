// NPO dashboard: live overview (polling) and the workbench's keyboard shortcuts.
// No framework, nothing loaded from elsewhere.
"use strict";
window.npoLoadedAt = window.npoLoadedAt || Date.now();

function pollOverview(box) {
  const url = box.dataset.pollUrl;
  const every = 1000 * parseFloat(box.dataset.pollS || "5");
  const status = document.getElementById("poll-status");
  async function tick() {
    try {
      const r = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (r.status === 401) { window.location = "/ui/login?next=/ui/"; return; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      const j = await r.json();
      box.innerHTML = j.html;
      box.dataset.polls = String(parseInt(box.dataset.polls || "0", 10) + 1);
      if (status) status.textContent = "Updated " + new Date().toLocaleTimeString() + "; next in " + every / 1000 + " s.";
    } catch (e) {
      if (status) status.textContent = "Could not update (" + e.message + "); retrying.";
    }
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
}

function workbench(form) {
  const radio = (v) => document.getElementById("kind-" + v);
  const select = document.getElementById("action");
  const comment = document.getElementById("comment");
  let overrideArmed = false;
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const typing = ev.target === comment;
    if (typing) {
      if (ev.key === "Escape") comment.blur();
      return;  // Enter in the comment submits the form natively
    }
    if (ev.target === select && ev.key !== "Enter") return;
    const k = ev.key.toLowerCase();
    if (k === "l") { radio("like").checked = true; overrideArmed = false; }
    else if (k === "a") { radio("abstain").checked = true; overrideArmed = false; }
    else if (k === "o") { radio("override").checked = true; overrideArmed = true; }
    else if (/^[1-9]$/.test(k) && (overrideArmed || radio("override").checked)) {
      const opt = select.querySelector('option[data-key="' + k + '"]');
      if (opt) { select.value = opt.value; radio("override").checked = true; }
    }
    else if (k === "c") { comment.focus(); }
    else if (ev.key === "Enter") { form.requestSubmit(); }
    else return;
    ev.preventDefault();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("overview-live");
  if (box) pollOverview(box);
  const form = document.getElementById("answer");
  if (form) workbench(form);
  if (document.getElementById("empty")) setTimeout(() => window.location.reload(), 5000);
});
