// Postee Streams UI. No framework, no inline script (the CSP forbids it): every value from
// a record reaches the page through textContent or a text node, never through innerHTML.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children); // strings become text nodes
    return node;
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (options.body) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { credentials: "same-origin", headers, ...options });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  const when = (iso) => iso.replace("T", " ").replace("Z", "");

  function commandChips(row) {
    const box = el("span", { class: "chips" });
    if (!row.routed) box.append(el("span", { class: "chip status-pending", text: "routing" }));
    else if (!row.commands.length)
      box.append(el("span", { class: "chip", text: row.error ? "routing failed" : "no action" }));
    for (const c of row.commands) {
      let label = `${c.action}: ${c.status.replace("_", " ")}`;
      if (c.attempts > 1) label += ` (attempt ${c.attempts})`;
      if (c.replay_id) label += " [replay]";
      box.append(el("span", { class: `chip status-${c.status}`, title: `${c.type} ${c.command_id}`, text: label }));
    }
    if (row.dlq) box.append(el("span", { class: "chip status-failed", text: `DLQ ${row.dlq}` }));
    return box;
  }

  function eventRow(row) {
    const link = el("a", { href: `/events/${encodeURIComponent(row.event_id)}`, text: row.title || row.event_id });
    return el(
      "tr",
      { "data-event": row.event_id, "data-at": row.at },
      el("td", { class: "time", text: when(row.at) }),
      el("td", { text: row.source }),
      el("td", { class: "title" }, link),
      el("td", { class: "routes", text: row.routes.join(", ") || "-" }),
      el("td", { class: "commands" }, commandChips(row)),
    );
  }

  function chart(target, counts, onPick) {
    const items = Object.entries(counts).sort((a, b) => b[1] - a[1]);
    const top = Math.max(1, ...items.map(([, n]) => n));
    target.replaceChildren(
      ...items.map(([name, n]) => {
        const bar = el("span", { class: `bar status-${name}` });
        bar.style.width = `${(100 * n) / top}%`; // CSSOM, allowed by the CSP
        const line = el("button", { type: "button", class: "chart-row", title: `show ${name}` },
          el("span", { class: "label", text: name }), el("span", { class: "track" }, bar),
          el("span", { class: "count", text: String(n) }));
        line.addEventListener("click", () => onPick(name));
        return line;
      }),
    );
    if (!items.length) target.append(el("p", { class: "muted", text: "nothing yet" }));
  }

  function eventsPage() {
    const form = $("#filters"), tbody = $("#rows"), live = $("#live"), empty = $("#empty");
    let source = null, buffered = [], loaded = false, countsTimer = null;
    const params = () => {
      const p = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
      return p;
    };
    const find = (id) => [...tbody.rows].find((tr) => tr.dataset.event === id);
    function upsert(row) {
      const tr = eventRow(row), old = find(row.event_id);
      if (old) return old.replaceWith(tr);
      const after = [...tbody.rows].find((other) => other.dataset.at < row.at);
      tbody.insertBefore(tr, after || null);
      while (tbody.rows.length > 500) tbody.deleteRow(-1);
    }
    function apply(data) {
      data.rows.forEach(upsert);
      data.gone.forEach((id) => find(id)?.remove());
      empty.hidden = tbody.rows.length > 0;
      scheduleCounts();
    }
    async function loadCounts() {
      const p = new URLSearchParams({ since: form.elements.since.value });
      const counts = await api(`/api/counts?${p}`);
      const pick = (name) => (value) => {
        const select = form.elements[name];
        if ([...select.options].some((o) => o.value === value)) { select.value = value; start(); }
      };
      chart($("#chart-routes"), counts.routes, pick("route"));
      chart($("#chart-actions"), counts.actions, pick("action"));
      chart($("#chart-statuses"), counts.statuses, pick("status"));
    }
    function scheduleCounts() {
      if (countsTimer === null) countsTimer = setTimeout(() => { countsTimer = null; loadCounts(); }, 1000);
    }
    async function loadRows() {
      const data = await api(`/api/events?${params()}&limit=200`);
      tbody.replaceChildren(...data.rows.map(eventRow));
      loaded = true;
      buffered.splice(0).forEach(apply);
      empty.hidden = tbody.rows.length > 0;
      loadCounts();
    }
    function start() {
      // Subscribe first, then load: nothing that changes in between is missed.
      if (source) source.close();
      loaded = false;
      buffered = [];
      source = new EventSource(`/api/stream?${params()}`);
      source.addEventListener("hello", () => {
        live.textContent = "live";
        live.className = "live on";
        loadRows();
      });
      source.addEventListener("rows", (m) => (loaded ? apply : (d) => buffered.push(d))(JSON.parse(m.data)));
      source.addEventListener("reload", () => start());
      source.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
    }
    form.addEventListener("change", start);
    start();
  }

  function tree(value, key, depth) {
    const name = key === undefined ? "" : `${key}: `;
    if (value === null || typeof value !== "object") {
      const kind = value === null ? "null" : typeof value;
      return el("span", { class: `json-${kind}` }, name, JSON.stringify(value));
    }
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const node = el("details", { open: depth < 2 });
    node.append(el("summary", { text: `${name}${Array.isArray(value) ? "[" : "{"}${entries.length}${Array.isArray(value) ? "]" : "}"}` }));
    node.append(el("ul", {}, ...entries.map(([k, v]) => el("li", {}, tree(v, k, depth + 1)))));
    return node;
  }

  function timelinePage() {
    for (const pre of document.querySelectorAll("pre.tree")) {
      let value;
      try { value = JSON.parse(pre.textContent); } catch { continue; }
      const view = el("div", { class: "json-tree" }, tree(value, undefined, 0));
      const toggle = el("button", { type: "button", class: "toggle", text: "show as text" });
      toggle.addEventListener("click", () => {
        pre.hidden = !pre.hidden;
        view.hidden = !pre.hidden;
        toggle.textContent = pre.hidden ? "show as text" : "show as tree";
      });
      pre.hidden = true;
      pre.before(toggle, view);
    }
  }

  function dlqPage() {
    const rows = [...document.querySelectorAll("tr[data-partition]")];
    const ids = [...new Set(rows.map((r) => r.dataset.event).filter(Boolean))].slice(0, 200);
    const show = (row) => {
      for (const tr of rows)
        if (tr.dataset.event === row.event_id) tr.querySelector(".event-state").replaceChildren(commandChips(row));
    };
    if (ids.length) {
      const q = new URLSearchParams({ ids: ids.join(",") });
      const source = new EventSource(`/api/stream?${q}`);
      source.addEventListener("rows", (m) => JSON.parse(m.data).rows.forEach(show));
      source.addEventListener("hello", () => api(`/api/events?${q}&limit=500`).then((d) => d.rows.forEach(show)));
    }
    for (const tr of rows) {
      const button = tr.querySelector("button.redrive"), cell = tr.querySelector(".redrives");
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          const body = JSON.stringify({ partition: Number(tr.dataset.partition), offset: Number(tr.dataset.offset) });
          const r = await api("/api/dlq/redrive", { method: "POST", body });
          const done = `${r.at} to ${r.to.topic}[${r.to.partition}]@${r.to.offset}`;
          cell.textContent = cell.textContent ? `${cell.textContent}; ${done}` : done;
        } catch (error) {
          cell.textContent = `redrive failed: ${error.message}`;
        } finally {
          button.disabled = false;
        }
      });
    }
  }

  function replayPage() {
    const form = $("#replay-form"), result = $("#replay-result"), facts = $("#replay-facts");
    const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    function render(job) {
      $("#replay-state").textContent = job.error ? `failed: ${job.error}` : job.state;
      const progress = $("#replay-progress");
      progress.max = Math.max(1, job.total || 0);
      progress.value = job.read;
      $("#replay-count").textContent = `${job.read} / ${job.total ?? "?"} events read`;
      const pairs = [
        ["Replay id", job.replay_id || "(starting)"], ["Mode", job.mode],
        ["Window", `${when(job.from)} to ${when(job.to)}`], ["Route", job.route || "every route"],
        ["Replayed", job.replayed], ["Routed", `${job.routed} / ${job.replayed}`],
        ["Commands issued", job.commands],
        ["Routes matched", Object.entries(job.routes).map(([k, v]) => `${k}: ${v}`).join(", ") || "-"],
        ["Outcomes", Object.entries(job.outcomes).map(([k, v]) => `${k.replace("_", " ")}: ${v}`).join(", ") || "-"],
      ];
      if (job.complete === false) pairs.push(["Warning", "not every event was routed in time; is a worker running?"]);
      facts.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-fact": k, text: String(v) })]));
    }
    async function follow(id) {
      result.hidden = false;
      let doneAt = null;
      for (;;) {
        const job = await api(`/api/replays/${encodeURIComponent(id)}`);
        render(job);
        if (job.state === "failed") break;
        if (job.state === "done") {
          doneAt ??= Date.now();
          const outcomes = Object.values(job.outcomes).reduce((a, b) => a + b, 0);
          if (outcomes >= job.commands || Date.now() - doneAt > 30000) break; // outcomes follow routing
        }
        await pause(500);
      }
      listJobs();
    }
    async function listJobs() {
      const { jobs } = await api("/api/replays");
      $("#replay-jobs").replaceChildren(...jobs.map((j) => {
        const link = el("a", { href: "#", text: `${when(j.started_at)}: ${j.mode}, ${j.route || "every route"}, ${j.state}, ${j.replayed} replayed` });
        link.addEventListener("click", (ev) => { ev.preventDefault(); follow(j.id); });
        return el("li", {}, link);
      }));
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      const execute = data.get("mode") === "execute";
      if (execute && !window.confirm("Run the actions again for every replayed event?")) return;
      const body = JSON.stringify({ from: data.get("from"), to: data.get("to"), route: data.get("route") || null, execute });
      try {
        follow((await api("/api/replays", { method: "POST", body })).id);
      } catch (error) {
        result.hidden = false;
        $("#replay-state").textContent = `not started: ${error.message}`;
      }
    });
    listJobs();
  }

  const pages = { events: eventsPage, timeline: timelinePage, dlq: dlqPage, replay: replayPage };
  document.addEventListener("DOMContentLoaded", () => pages[document.body.dataset.page]?.());
})();
