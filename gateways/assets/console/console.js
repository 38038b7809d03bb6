// Turnstone console: the cluster's nodes and workstreams, live, over the console's API.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const STATES = ["running", "thinking", "attention", "error", "idle"];
const REFRESH_MS = 1000;

const app = {
  view: "nodes",
  nodeId: null,
  nodes: [],
  expanded: new Set(),
  dirty: true,
  refreshing: false,
  pending: [],
  patchScheduled: false,
  source: null,
  ws: { page: 1, pages: 1 },
  events: 0,
};

const api = window.turnstone.api;

function short(n) {
  n = Number(n) || 0;
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

// ---------- theme ----------

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  const other = theme === "dark" ? "light" : "dark";
  const b = $("#theme");
  b.textContent = other === "light" ? "Light theme" : "Dark theme";
  b.setAttribute("aria-label", `Switch to the ${other} theme`);
}

$("#theme").addEventListener("click", () => {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  try { localStorage.setItem("turnstone-console-theme", next); } catch (_) { /* private mode */ }
  applyTheme(next);
});

// ---------- start ----------

function start() {
  let theme = "dark";
  try { theme = localStorage.getItem("turnstone-console-theme") || "dark"; } catch (_) { /* */ }
  applyTheme(theme);
  return window.turnstone.signIn({ probe: "/v1/api/cluster/overview", onReady: openApp });
}

// ---------- routing ----------

function route() {
  const hash = location.hash.replace(/^#/, "");
  if (hash.startsWith("/node/")) {
    app.view = "node";
    app.nodeId = decodeURIComponent(hash.slice("/node/".length));
  } else if (hash.startsWith("/workstreams")) {
    app.view = "ws";
  } else if (hash.startsWith("/admin")) {
    app.view = "admin";
  } else {
    app.view = "nodes";
  }
  $("#view-nodes").hidden = app.view !== "nodes";
  $("#view-ws").hidden = app.view !== "ws";
  $("#view-node").hidden = app.view !== "node";
  $("#view-admin").hidden = app.view !== "admin";
  for (const [id, view] of [["#nav-nodes", "nodes"], ["#nav-ws", "ws"], ["#nav-admin", "admin"]]) {
    if (app.view === view) $(id).setAttribute("aria-current", "page");
    else $(id).removeAttribute("aria-current");
  }
  if (app.view === "admin" && window.consoleAdmin) window.consoleAdmin.show();
  refresh(true);
}

window.addEventListener("hashchange", route);

// ---------- data ----------

async function refresh(force) {
  if (!force && !app.dirty) return;
  if (app.refreshing) { app.dirty = true; return; }
  app.refreshing = true;
  app.dirty = false;
  try {
    const overview = await api("/v1/api/cluster/overview");
    renderOverview(overview);
    if (app.view === "nodes") await refreshNodes();
    else if (app.view === "ws") await refreshWorkstreams();
    else if (app.view === "node") await refreshNode();
  } catch (e) {
    if (e.status === 401) { location.reload(); return; }
    toast(`Could not refresh: ${e.message}`);
  } finally {
    app.refreshing = false;
  }
}

function renderOverview(o) {
  $("#totals").textContent = `${short(o.nodes)} nodes · ${short(o.workstreams)} workstreams`;
  for (const s of STATES) {
    const b = document.querySelector(`#status-bar [data-count="${s}"]`);
    if (b) b.textContent = short(o.states[s] || 0);
  }
  $("#sb-nodes").textContent = short(o.nodes);
  $("#sb-ws").textContent = short(o.workstreams);
  $("#sb-tokens").textContent = short(o.aggregate.total_tokens);
  $("#sb-calls").textContent = short(o.aggregate.total_tool_calls);
  const drift = $("#drift");
  drift.hidden = !o.version_drift;
  drift.textContent = o.version_drift ? `drift ${o.versions.join(" / ")}` : "";
  drift.title = o.version_drift ? "The nodes run different versions" : "";
}

async function allNodes() {
  const page = await api("/v1/api/cluster/nodes?sort=name&limit=1000");
  app.nodes = page.nodes;
  const list = $("#node-ids");
  if (list.childElementCount !== app.nodes.length) {
    const frag = document.createDocumentFragment();
    for (const n of app.nodes) { const o = el("option"); o.value = n.node_id; frag.append(o); }
    list.replaceChildren(frag);
  }
  return app.nodes;
}

// ---------- nodes ----------

// "gpu-east-01" and "gpu-east-02" group as "gpu-east"; "host_a3f2" as "host".
function groupOf(id) {
  const g = id.replace(/[-_.][0-9a-z]*\d[0-9a-z]*$/i, "");
  return g && g !== id ? g : id;
}

function loadCell(ws, max) {
  const td = el("td");
  const box = el("div", "load");
  const bar = el("div", "bar");
  const fill = el("span");
  const pct = max > 0 ? Math.min(100, Math.round((ws / max) * 100)) : 0;
  fill.style.width = `${pct}%`;
  if (pct >= 100) fill.className = "full";
  else if (pct >= 60) fill.className = "high";
  bar.append(fill);
  box.append(bar, el("span", "pct", `${pct}%`));
  bar.setAttribute("role", "meter");
  bar.setAttribute("aria-label", "Load");
  bar.setAttribute("aria-valuenow", String(pct));
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  td.append(box);
  return td;
}

function nodeRow(n, member) {
  const tr = el("tr", member ? "node member" : "node");
  tr.dataset.node = n.node_id;
  const degraded = n.health && n.health.status === "degraded";
  if (!n.reachable) tr.classList.add("unreachable");
  else if (degraded) tr.classList.add("degraded");
  const name = el("td");
  const link = el("a", "node-link", n.node_id);
  link.href = `#/node/${encodeURIComponent(n.node_id)}`;
  name.append(link);
  if (!n.reachable) name.append(el("span", "mark unreachable", "UNREACHABLE"));
  else if (degraded) name.append(el("span", "mark degraded", "DEGRADED"));
  tr.append(name, el("td", "num ws", String(n.ws_total)), el("td", "num run", String(n.ws_running)),
    el("td", "num attn", String(n.ws_attention)), el("td", "num tokens", short(n.total_tokens)),
    el("td", "num version", n.version || ""), loadCell(n.ws_total, n.max_ws));
  return tr;
}

function groupRow(name, members) {
  const sum = (k) => members.reduce((a, n) => a + (Number(n[k]) || 0), 0);
  const versions = [...new Set(members.map((n) => n.version).filter(Boolean))];
  const open = app.expanded.has(name);
  const tr = el("tr", "group");
  tr.dataset.group = name;
  const first = el("td");
  const toggle = el("button", "toggle", open ? "▾" : "▸");
  toggle.type = "button";
  toggle.setAttribute("aria-expanded", String(open));
  toggle.setAttribute("aria-label", `${open ? "Collapse" : "Expand"} ${name}`);
  first.append(toggle, el("span", "group-name", name), el("span", "count-badge", `${members.length} nodes`));
  const unreachable = members.filter((n) => !n.reachable).length;
  if (unreachable) first.append(el("span", "mark unreachable", `${unreachable} UNREACHABLE`));
  tr.append(first, el("td", "num ws", String(sum("ws_total"))), el("td", "num run", String(sum("ws_running"))),
    el("td", "num attn", String(sum("ws_attention"))), el("td", "num tokens", short(sum("total_tokens"))),
    el("td", "num version", versions.length > 1 ? "mixed" : (versions[0] || "")),
    loadCell(sum("ws_total"), sum("max_ws")));
  tr.addEventListener("click", () => {
    if (app.expanded.has(name)) app.expanded.delete(name); else app.expanded.add(name);
    renderNodes();
  });
  return tr;
}

function renderNodes() {
  const groups = new Map();
  for (const n of app.nodes) {
    const g = groupOf(n.node_id);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(n);
  }
  const frag = document.createDocumentFragment();
  for (const name of [...groups.keys()].sort()) {
    const members = groups.get(name);
    if (members.length === 1) { frag.append(nodeRow(members[0], false)); continue; }
    frag.append(groupRow(name, members));
    if (app.expanded.has(name)) for (const n of members) frag.append(nodeRow(n, true));
  }
  $("#node-table tbody").replaceChildren(frag);
  // When the first view with nodes was on screen (ms since navigation), for the scale tests.
  if (app.firstRenderMs === undefined && app.nodes.length) app.firstRenderMs = performance.now();
  $("#nodes-empty").hidden = app.nodes.length > 0;
  $("#node-table").hidden = app.nodes.length === 0;
}

async function refreshNodes() {
  await allNodes();
  renderNodes();
}

// ---------- workstreams ----------

function stateCell(state) {
  const td = el("td");
  td.append(el("span", `state ${state}`, state));
  return td;
}

function wsRow(w, withNode) {
  const tr = el("tr", "ws");
  tr.dataset.ws = w.id;
  tr.dataset.node = w.node;
  const name = el("td");
  const link = el("a", "ws-link", w.name || w.id.slice(0, 8));
  link.href = `/node/${encodeURIComponent(w.node)}/`;
  link.title = `Open ${w.node}'s UI`;
  name.append(link);
  if (w.title) name.append(el("div", "empty", w.title));
  tr.append(stateCell(w.state), name);
  if (withNode) {
    const node = el("td");
    const nl = el("a", "node-link", w.node);
    nl.href = `#/node/${encodeURIComponent(w.node)}`;
    node.append(nl);
    tr.append(node);
  }
  tr.append(el("td", "activity", w.activity || ""), el("td", "num tokens", short(w.tokens)),
    el("td", "num", `${Math.round((Number(w.context_ratio) || 0) * 100)}%`));
  return tr;
}

function wsQuery() {
  const p = new URLSearchParams();
  const search = $("#ws-search").value.trim();
  const state = $("#ws-state").value;
  const node = $("#ws-node").value.trim();
  if (search) p.set("search", search);
  if (state) p.set("state", state);
  if (node) p.set("node", node);
  p.set("sort", $("#ws-sort").value);
  p.set("page", String(app.ws.page));
  p.set("per_page", "50");
  return p.toString();
}

async function refreshWorkstreams() {
  const page = await api(`/v1/api/cluster/workstreams?${wsQuery()}`);
  app.ws.pages = Math.max(1, page.pages);
  if (app.ws.page > app.ws.pages) { app.ws.page = app.ws.pages; }
  const frag = document.createDocumentFragment();
  for (const w of page.workstreams) frag.append(wsRow(w, true));
  $("#ws-table tbody").replaceChildren(frag);
  $("#ws-empty").hidden = page.total > 0;
  $("#ws-page-info").textContent = `page ${page.page} of ${app.ws.pages} · ${page.total} workstreams`;
  $("#ws-prev").disabled = page.page <= 1;
  $("#ws-next").disabled = page.page >= app.ws.pages;
}

let searchTimer = null;
$("#ws-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { app.ws.page = 1; refresh(true); }, 250);
});
for (const id of ["#ws-state", "#ws-sort", "#ws-node"]) {
  $(id).addEventListener("change", () => { app.ws.page = 1; refresh(true); });
}
$("#ws-filters").addEventListener("submit", (ev) => { ev.preventDefault(); app.ws.page = 1; refresh(true); });
$("#ws-prev").addEventListener("click", () => { if (app.ws.page > 1) { app.ws.page -= 1; refresh(true); } });
$("#ws-next").addEventListener("click", () => { if (app.ws.page < app.ws.pages) { app.ws.page += 1; refresh(true); } });

// ---------- one node ----------

async function refreshNode() {
  const id = app.nodeId;
  let n;
  try {
    n = await api(`/v1/api/cluster/node/${encodeURIComponent(id)}`);
  } catch (e) {
    $("#node-title").textContent = `${id}: ${e.message}`;
    $("#node-facts").replaceChildren();
    $("#node-ws-table tbody").replaceChildren();
    $("#node-open").hidden = true;
    return;
  }
  $("#node-title").textContent = n.node_id;
  const facts = [
    ["URL", n.server_url],
    ["Reachable", n.reachable ? "yes" : "no"],
    ["Health", (n.health && n.health.status) || "—"],
    ["Version", n.version || "—"],
    ["Model", (n.health && n.health.model) || "—"],
    ["Workstreams", `${n.workstreams.length} of ${n.max_ws}`],
    ["Tokens", short((n.aggregate && n.aggregate.total_tokens) || n.workstreams.reduce((a, w) => a + w.tokens, 0))],
    ["Started", n.started ? new Date(n.started * 1000).toLocaleString() : "—"],
    ["Last polled", n.last_seen ? new Date(n.last_seen * 1000).toLocaleTimeString() : "not polled"],
  ];
  const dl = document.createDocumentFragment();
  for (const [k, v] of facts) dl.append(el("dt", "", k), el("dd", "", String(v)));
  $("#node-facts").replaceChildren(dl);
  const open = $("#node-open");
  open.hidden = !/^https?:\/\//i.test(n.server_url);
  open.href = `/node/${encodeURIComponent(n.node_id)}/`;
  const frag = document.createDocumentFragment();
  for (const w of n.workstreams) frag.append(wsRow(w, false));
  $("#node-ws-table tbody").replaceChildren(frag);
}

// ---------- live updates ----------

function connectEvents() {
  const live = $("#live");
  const source = new EventSource("/v1/api/cluster/events");
  app.source = source;
  source.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  source.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  source.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    app.events += 1;
    app.dirty = true;
    if (ev.type === "cluster_state") {
      app.pending.push(ev);
      if (!app.patchScheduled) {
        app.patchScheduled = true;
        requestAnimationFrame(patchRows);
      }
    }
  };
}

// State changes of rows on screen are shown at the next frame, in one pass; everything else
// waits for the next refresh (at most one a second, however many events arrive).
function patchRows() {
  app.patchScheduled = false;
  const latest = new Map();
  for (const ev of app.pending) latest.set(ev.ws_id, ev);
  app.pending = [];
  for (const [id, ev] of latest) {
    const row = document.querySelector(`tr.ws[data-ws="${CSS.escape(id)}"]`);
    if (!row) continue;
    const cell = row.querySelector(".state");
    if (cell && ev.state) { cell.className = `state ${ev.state}`; cell.textContent = ev.state; }
    const activity = row.querySelector(".activity");
    if (activity && ev.activity !== undefined) activity.textContent = ev.activity;
    const tokens = row.querySelector(".tokens");
    if (tokens && ev.tokens !== undefined) tokens.textContent = short(ev.tokens);
  }
}

// ---------- new workstream ----------

$("#new-ws").addEventListener("click", async () => {
  const select = $("#new-node");
  try { await allNodes(); } catch (_) { /* show what is known */ }
  while (select.options.length > 2) select.remove(2);
  const frag = document.createDocumentFragment();
  for (const n of app.nodes) {
    const o = el("option", "", n.reachable ? n.node_id : `${n.node_id} (unreachable)`);
    o.value = n.node_id;
    frag.append(o);
  }
  select.append(frag);
  if (app.view === "node" && app.nodeId) select.value = app.nodeId;
  $("#new-error").textContent = "";
  $("#new-ws-modal").showModal();
  $("#new-task").focus();
});

$("#new-cancel").addEventListener("click", () => $("#new-ws-modal").close());

$("#new-ws-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = {
    node_id: $("#new-node").value,
    name: $("#new-name").value,
    model: $("#new-model").value,
    initial_message: $("#new-task").value,
  };
  try {
    const r = await api("/v1/api/cluster/workstreams/new", body);
    $("#new-ws-modal").close();
    $("#new-ws-form").reset();
    toast(`Workstream requested on ${r.target_node} (${r.correlation_id})`);
    app.dirty = true;
  } catch (e) {
    $("#new-error").textContent = e.message;
  }
});

function openApp() {
  $("#auth").hidden = true;
  $("#app").hidden = false;
  route();
  connectEvents();
  setInterval(() => refresh(false), REFRESH_MS);
}

window.consoleApp = app;
start().catch((e) => { document.body.textContent = `The console failed to start: ${e.message}`; });
