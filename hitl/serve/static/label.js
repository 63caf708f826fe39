// The labeling page: take the next task, show it, pick a label (click or key), submit, next.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let task = null, chosen = null, busy = false, answered = 0, retry = null;

  function status(text) { $("status").textContent = text || ""; }

  async function call(method, url, body) {
    const opts = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const resp = await fetch(url, opts);
    if (resp.status === 401) { window.location.assign("/"); throw new Error("signed out"); }
    return resp;
  }

  function pick(i) {
    if (!task || i < 0 || i >= task.labels.length) return;
    chosen = i;
    for (const b of $("labels").children) b.setAttribute("aria-checked", String(Number(b.dataset.index) === i));
    $("submit").disabled = false;
  }

  function show(t) {
    task = t; chosen = null;
    $("empty").hidden = true; $("task").hidden = false;
    $("item-id").textContent = t.item_id;
    const img = $("image"), text = $("text");
    if (t.kind === "text") { img.hidden = true; img.removeAttribute("src"); text.hidden = false; text.textContent = t.text; }
    else { text.hidden = true; img.hidden = false; img.src = t.content_url; }
    $("suggestion").hidden = t.suggestion === null;
    if (t.suggestion !== null) {
      $("suggested").textContent = t.suggestion;
      $("score").textContent = t.score === null ? "" : "(" + Math.round(100 * t.score) + "%)";
    }
    const box = $("labels");
    box.replaceChildren();
    // Names typed as they are (one character each) need no key shown beside them.
    const named = t.labels.every((name, i) => t.keys[i] === name);
    $("hint-pick").textContent = named ? "Type a label's name" : "Press the key shown on a label";
    t.labels.forEach((name, i) => {
      const b = document.createElement("button");
      b.type = "button"; b.dataset.index = String(i); b.setAttribute("role", "radio");
      b.setAttribute("aria-checked", "false"); b.textContent = name;
      if (t.keys[i] && !named) { const k = document.createElement("kbd"); k.textContent = t.keys[i]; b.appendChild(k); }
      if (t.suggestion === name) b.classList.add("suggested");
      b.addEventListener("click", () => pick(i));
      box.appendChild(b);
    });
    $("submit").disabled = true;
  }

  async function next() {
    if (busy) return;
    busy = true; clearTimeout(retry);
    try {
      const resp = await call("POST", "/api/next");
      if (resp.status === 204) {
        task = null; $("task").hidden = true; $("empty").hidden = false;
        retry = setTimeout(next, 5000);
      } else if (resp.ok) {
        show(await resp.json()); status("");
      } else {
        status((await resp.json()).error || "error " + resp.status);
        retry = setTimeout(next, 5000);
      }
    } catch (e) { status("Cannot reach the server; trying again."); retry = setTimeout(next, 5000); }
    finally { busy = false; }
  }

  async function submit() {
    if (busy || !task || chosen === null) return;
    busy = true; $("submit").disabled = true;
    const label = task.labels[chosen];
    try {
      const resp = await call("POST", "/api/tasks/" + task.task + "/answer", { label });
      if (resp.ok) { answered += 1; $("done").textContent = String(answered); status("Saved: " + label); }
      else { status((await resp.json()).error || "error " + resp.status); }
    } catch (e) { status("Cannot reach the server; your answer was not saved."); busy = false; $("submit").disabled = false; return; }
    busy = false;
    next();
  }

  // The label a key picks: the one whose key is exactly ev.key ("A" and "a" may be two
  // labels), else the only one equal to it ignoring case (Caps Lock on), else none.
  function keyIndex(key) {
    const exact = task.keys.indexOf(key);
    if (exact >= 0) return exact;
    const lower = key.toLowerCase(), loose = [];
    task.keys.forEach((k, i) => { if (k && k.toLowerCase() === lower) loose.push(i); });
    return loose.length === 1 ? loose[0] : -1;
  }

  document.addEventListener("keydown", (ev) => {
    // AltGr reads as Ctrl+Alt on some systems, and some names need it (@ or { on many layouts).
    const modified = ev.ctrlKey || ev.metaKey || ev.altKey;
    if ((modified && !ev.getModifierState("AltGraph")) || !task) return;
    if (ev.key === "Enter") { ev.preventDefault(); submit(); return; }
    const i = keyIndex(ev.key);
    if (i >= 0) { ev.preventDefault(); pick(i); }
  });
  $("submit").addEventListener("click", submit);
  $("again").addEventListener("click", next);
  next();
})();
