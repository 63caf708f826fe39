// The engineer's progress page: polls /api/progress every five seconds.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);

  function fill(id, entries) {
    const dl = $(id);
    dl.replaceChildren();
    for (const [k, v] of entries) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k.replace(/_/g, " "); dd.textContent = String(v);
      dl.append(dt, dd);
    }
  }

  async function refresh() {
    try {
      const resp = await fetch("/api/progress", { credentials: "same-origin" });
      if (resp.status === 401 || resp.status === 403) { window.location.assign("/"); return; }
      const p = await resp.json();
      fill("tasks", Object.entries(p.tasks));
      fill("items", Object.entries(p.items));
      fill("answers", [["total", p.answers_total], ["last hour", p.answers_last_hour],
                       ["rounds done", p.rounds.done], ["rounds open", p.rounds.open]]);
      fill("labels", Object.entries(p.labels_by_source));
      const ul = $("online");
      ul.replaceChildren(...p.hiters_online.map((h) => { const li = document.createElement("li"); li.textContent = h; return li; }));
      const top = Math.max(1, ...p.answers_per_hour_24h);
      $("hours").replaceChildren(...p.answers_per_hour_24h.map((n, i) => {
        const d = document.createElement("div");
        d.style.height = (100 * n / top) + "%";
        d.title = n + " answers, " + (23 - i) + " h ago";
        return d;
      }));
      $("updated").textContent = "updated " + new Date(p.at * 1000).toLocaleTimeString();
    } catch (e) { $("updated").textContent = "cannot reach the server"; }
  }
  refresh();
  setInterval(refresh, 5000);
})();
