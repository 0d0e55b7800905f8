// eddy dashboard: reads the JSON API every 2 s and draws it. Everything
// from the engine goes in with textContent, never as HTML.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "eddy-dashboard-token";
const state = { readOnly: true, selected: null, dlqNext: null };

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}

function num(n, cls) {
  return el("td", n, "num" + (cls ? " " + cls : ""));
}

function ms(v) {
  if (v === null || v === undefined) return "-";
  if (v < 1000) return v + "ms";
  if (v < 60000) return (v / 1000).toFixed(1) + "s";
  if (v < 3600000) return Math.floor(v / 60000) + "m" + String(Math.floor(v / 1000) % 60).padStart(2, "0") + "s";
  return Math.floor(v / 3600000) + "h" + String(Math.floor(v / 60000) % 60).padStart(2, "0") + "m";
}

function time(secs) {
  return secs ? new Date(secs * 1000).toISOString().replace("T", " ").replace("Z", "") : "-";
}

async function get(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// An action: JSON body, the token in a header.
async function act(path, body) {
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body || {}) });
  const answer = await r.json();
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
}

function q(name) {
  return "/api/queues/" + encodeURIComponent(name);
}

function status(text) {
  $("status").textContent = text;
}

async function overview() {
  const o = await get("/api/overview");
  state.readOnly = o.read_only;
  $("prefix").textContent = "prefix " + o.prefix;
  const mode = $("mode");
  mode.textContent = o.read_only ? "read-only (restart with --token to act)" : "actions need the token";
  mode.className = "badge" + (o.read_only ? " read-only" : "");
  $("token-form").hidden = o.read_only;
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  for (const b of document.querySelectorAll("button.action")) b.disabled = o.read_only;
}

async function refreshQueues() {
  const data = await get("/api/queues");
  const body = $("queues").tBodies[0];
  body.replaceChildren();
  for (const r of data.queues) {
    const name = el("td", r.name, "name");
    const tr = row(
      r.error
        ? [name, el("td", r.error, "error")]
        : [
            name,
            num((r.ready_estimated ? "~" : "") + r.ready, "ready"),
            num(r.unacked, "unacked"),
            num(r.dead_lettered, "dlq-count" + (r.dead_lettered ? " nonzero" : "")),
            num(r.delayed, "delayed"),
            num(r.consumers, "consumers"),
            num(ms(r.oldest_pending_age_ms), "age"),
          ],
    );
    if (r.error) tr.lastChild.colSpan = 6;
    tr.dataset.queue = r.name;
    if (r.name === state.selected) tr.classList.add("selected");
    tr.addEventListener("click", () => select(r.name));
    body.appendChild(tr);
  }
  $("queue-count").textContent = data.queues.length + " queues, read in " + data.read_ms + " ms";
}

async function refreshChart() {
  const path = "/api/throughput" + (state.selected ? "?queue=" + encodeURIComponent(state.selected) : "");
  const data = await get(path);
  const which = state.selected || "all queues";
  $("chart-queue").textContent = which;
  $("rate-chart-queue").textContent = which;
  const backlog = [["ready", "#2f74c0"], ["unacked", "#d68a00"], ["dead_lettered", "#c8372d"], ["delayed", "#7a55b3"]];
  draw($("chart"), data.points, backlog, 4);
  draw($("rate-chart"), data.rates || [], [["sent_per_s", "#2f74c0"], ["settled_per_s", "#2e9a5a"]], 1);
}

// A line chart of `points` ({t, key: value...}) over the last minutes; a
// null value breaks its line (an interval that could not be measured).
function draw(canvas, points, series, least) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  // The span grows with the samples, up to the 10 minutes kept.
  const now = Date.now();
  const first = points.length ? points[0].t : now;
  const span = Math.min(10 * 60000, Math.max(60000, now - first));
  let max = least;
  for (const p of points) for (const [k] of series) if (p[k] != null) max = Math.max(max, p[k]);
  max = niceMax(max);
  ctx.strokeStyle = "#dde2e8";
  ctx.fillStyle = "#6b7480";
  ctx.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + ((h - pad) * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad + 20, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(axisLabel((max * (4 - i)) / 4), 2, y + 4);
  }
  for (let i = 0; i <= 5; i++) {
    const ago = (span * i) / 5;
    const label = i === 0 ? "now" : ago >= 60000 ? "-" + (ago / 60000).toFixed(ago % 60000 ? 1 : 0) + "m" : "-" + Math.round(ago / 1000) + "s";
    ctx.fillText(label, w - 24 - ((w - pad - 44) * i) / 5, h - 2);
  }
  const x = (t) => pad + 20 + ((w - pad - 20) * (t - (now - span))) / span;
  const y = (v) => pad / 2 + (h - pad) * (1 - v / max);
  for (const [k, color] of series) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    for (const p of points) {
      if (p[k] == null) { drawing = false; continue; }
      if (drawing) ctx.lineTo(x(p.t), y(p[k])); else ctx.moveTo(x(p.t), y(p[k]));
      drawing = true;
    }
    ctx.stroke();
  }
}

// The top of the axis: 4 steps of 1, 2 or 5 times a power of ten.
function niceMax(max) {
  const step = max / 4;
  const mag = Math.pow(10, Math.floor(Math.log10(step)));
  const nice = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step - 1e-9);
  return nice * 4;
}

function axisLabel(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(v < 1 ? 2 : 1);
}

async function select(name) {
  state.selected = name;
  for (const tr of $("queues").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.queue === name);
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  $("action-result").textContent = "";
  await Promise.all([refreshDetail(), refreshChart()]);
}

async function refreshDetail() {
  const name = state.selected;
  if (!name) return;
  const d = await get(q(name));
  const consumers = $("consumers").tBodies[0];
  consumers.replaceChildren();
  for (const c of d.queue.consumers) consumers.appendChild(row([c.name, num(c.pending), num(ms(c.idle_ms))]));
  if (!d.queue.consumers.length) consumers.appendChild(row(["none"]));
  const info = $("info").tBodies[0];
  info.replaceChildren();
  for (const [k, v] of [
    ["stream", d.queue.stream],
    ["consumer group", d.queue.consumer_group],
    ["length", d.queue.length],
    ["pending", d.queue.pending],
    ["lag", (d.queue.lag_estimated ? "~" : "") + d.queue.lag],
    ["delayed", d.queue.delayed],
    ["oldest pending age", ms(d.queue.oldest_pending_age_ms)],
    ["created", time(d.queue.created_at)],
  ]) info.appendChild(row([k, v]));
  await refreshDlq(false);
}

async function refreshDlq(more) {
  const name = state.selected;
  const from = more && state.dlqNext ? "&from=" + encodeURIComponent(state.dlqNext) : "";
  const d = await get(q(name) + "/dlq?count=50" + from);
  if (name !== state.selected) return;
  const body = $("dlq").tBodies[0];
  if (!more) body.replaceChildren();
  $("dlq-length").textContent = d.length + " messages";
  for (const m of d.messages) {
    const last = m.failures.length ? m.failures[m.failures.length - 1] : null;
    const buttons = el("td");
    const requeue = el("button", "Requeue", "action requeue");
    const remove = el("button", "Delete", "action delete");
    requeue.disabled = remove.disabled = state.readOnly;
    requeue.addEventListener("click", () => run(() => act(q(name) + "/dlq/requeue", { ids: [m.id] })));
    remove.addEventListener("click", () => {
      if (confirm("Delete message " + m.id + " for good?")) run(() => act(q(name) + "/dlq/delete", { ids: [m.id] }));
    });
    buttons.append(requeue, " ", remove);
    const tr = row([el("td", m.id, "id"), el("td", last ? time(last.timestamp) : "-"), el("td", m.reason || "(no failure recorded)", "reason"), el("td", JSON.stringify(m.data), "data"), buttons]);
    tr.dataset.id = m.id;
    body.appendChild(tr);
  }
  state.dlqNext = d.next;
  $("dlq-more").hidden = !d.next;
}

// Run an action, show its answer, and refresh what it changed.
async function run(action) {
  const out = $("action-result");
  try {
    const answer = await action();
    out.textContent = Object.entries(answer).map(([k, v]) => k + " " + v).join(", ");
  } catch (e) {
    out.textContent = "refused: " + e.message;
  }
  await Promise.all([refreshQueues(), refreshDetail()]).catch((e) => status(e.message));
}

async function refreshRoutes() {
  const d = await get("/api/routes");
  const body = $("routes").tBodies[0];
  body.replaceChildren();
  for (const r of d.routes) body.appendChild(row([r.event_type === "*" ? "* (every type)" : r.event_type, r.services.join(", ")]));
  if (!d.routes.length) body.appendChild(row(["no routes"]));
}

async function search(event) {
  event.preventDefault();
  const id = $("search-id").value.trim();
  if (!id) return;
  try {
    const d = await get("/api/messages/" + encodeURIComponent(id));
    $("search-result").textContent = JSON.stringify(d.found, null, 2);
  } catch (e) {
    $("search-result").textContent = e.message;
  }
}

async function tick() {
  try {
    await Promise.all([refreshQueues(), refreshChart()]);
    status("updated " + new Date().toLocaleTimeString());
  } catch (e) {
    status("cannot read: " + e.message);
  }
}

function start() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    status("token set for this tab");
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
  });
  $("requeue-all").addEventListener("click", () => run(() => act(q(state.selected) + "/dlq/requeue-all", {})));
  $("reason-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(() => act(q(state.selected) + "/dlq/requeue-reason", { reason: $("reason").value }));
  });
  $("dlq-more").addEventListener("click", () => refreshDlq(true));
  $("search-form").addEventListener("submit", search);
  overview().catch((e) => status(e.message));
  refreshRoutes().catch((e) => status(e.message));
  tick();
  setInterval(tick, REFRESH_MS);
}

start();
