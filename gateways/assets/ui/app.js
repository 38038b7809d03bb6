// Turnstone browser UI: parallel workstreams over the node's HTTP/SSE API.
"use strict";

// A workstream's state is a coloured dot (CSS) with its name as the accessible label: no
// glyph that a machine's fonts may lack.
const STATES = ["idle", "thinking", "running", "attention", "error"];
const SVG = "http://www.w3.org/2000/svg";
function icon(path) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("aria-hidden", "true");
  const p = document.createElementNS(SVG, "path");
  p.setAttribute("d", path);
  svg.append(p);
  return svg;
}
function paintState(dot, state) {
  const known = STATES.includes(state) ? state : "idle";
  dot.className = `sym ${known}`;
  dot.dataset.state = known;
  dot.setAttribute("role", "img");
  dot.setAttribute("aria-label", known);
  dot.title = known;
}
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

const app = { streams: new Map(), current: null, global: null, models: [] };

const api = window.turnstone.api;

function renderMarkdown(target, text) {
  const html = window.marked ? marked.parse(text, { breaks: true }) : null;
  if (html !== null && window.DOMPurify) {
    target.innerHTML = DOMPurify.sanitize(html);
    if (window.hljs) target.querySelectorAll("pre code").forEach((c) => hljs.highlightElement(c));
  } else {
    target.textContent = text;
  }
}

// ---------- workstreams ----------

async function openApp() {
  $("#auth").hidden = true;
  $("#app").hidden = false;
  const list = await api("/v1/api/workstreams");
  for (const ws of list.workstreams) addWorkstream(ws.id, ws.name, ws.state);
  if (list.workstreams.length) select(list.workstreams[0].id);
  app.global = new EventSource("/v1/api/events/global");
  app.global.onmessage = (m) => onGlobal(JSON.parse(m.data));
}

function addWorkstream(id, name, state) {
  if (app.streams.has(id)) return app.streams.get(id);
  const tab = el("div", "tab");
  tab.dataset.ws = id;
  const sym = el("span", "sym");
  paintState(sym, state);
  const label = el("span", "name", name);
  const close = el("button", "close");
  close.append(icon("M4 4l8 8M12 4l-8 8"));
  close.title = "Close workstream";
  close.setAttribute("aria-label", `Close workstream ${name}`);
  close.addEventListener("click", async (ev) => {
    ev.stopPropagation();
    try { await api("/v1/api/workstreams/close", { ws_id: id }); removeWorkstream(id); }
    catch (e) { note(id, e.message, "error"); }
  });
  label.addEventListener("dblclick", async () => {
    const next = prompt("Rename workstream", label.textContent);
    if (next) await api("/v1/api/command", { ws_id: id, command: `/ws rename ${next}` });
  });
  tab.append(sym, label, close);
  tab.addEventListener("click", () => select(id));
  $("#tabs").append(tab);
  const view = el("section", "view");
  view.dataset.ws = id;
  $("#views").append(view);
  view.append(emptyState());
  const ws = { id, name, state: state || "idle", tab, view, turn: null, tools: new Map(),
    source: null, alias: "", model: "", usage: "" };
  app.streams.set(id, ws);
  connect(ws);
  return ws;
}

// What a new workstream shows until its first message: what to do next.
function emptyState() {
  const box = el("div", "empty");
  box.append(el("h2", null, "Start with a message"),
    el("p", null, "Ask a question or describe a task below, then press Enter. The model can " +
      "run commands, read and edit files, search and plan; anything that changes things " +
      "waits for your approval here."),
    el("p", null, "New opens another workstream beside this one; Sessions resumes a saved " +
      "conversation. Type /help for commands."));
  return box;
}

function removeWorkstream(id) {
  const ws = app.streams.get(id);
  if (!ws) return;
  if (ws.source) ws.source.close();
  ws.tab.remove();
  ws.view.remove();
  app.streams.delete(id);
  if (app.current === id) {
    const next = app.streams.keys().next();
    app.current = null;
    if (!next.done) select(next.value);
  }
}

function select(id) {
  app.current = id;
  for (const ws of app.streams.values()) {
    const on = ws.id === id;
    ws.tab.classList.toggle("active", on);
    ws.view.classList.toggle("active", on);
  }
  refreshBar();
  $("#input").focus();
}

function setState(ws, state) {
  ws.state = state;
  ws.tab.className = `tab ${state}${app.current === ws.id ? " active" : ""}`;
  paintState($(".sym", ws.tab), state);
  if (app.current === ws.id) refreshBar();
}

function refreshBar() {
  const ws = app.streams.get(app.current);
  if (!ws) return;
  const dot = el("span", "sym");
  paintState(dot, ws.state);
  $("#state").replaceChildren(dot, document.createTextNode(` ${ws.state}`));
  $("#usage").textContent = ws.usage || "0 tokens used";
  $("#model-name").textContent = ws.model || "no model detected yet";
  $("#model-name").classList.toggle("missing", !ws.model);
  const select = $("#model-select");
  select.replaceChildren(...app.models.map((m) => {
    const o = el("option", null, m);
    o.value = m;
    return o;
  }));
  select.value = ws.alias;
}

function onGlobal(e) {
  const ws = app.streams.get(e.ws_id);
  if (e.type === "ws_state") {
    if (ws) setState(ws, e.state);
  } else if (e.type === "ws_rename") {
    if (ws) {
      $(".name", ws.tab).textContent = e.name;
      $(".close", ws.tab).setAttribute("aria-label", `Close workstream ${e.name}`);
    }
  } else if (e.type === "ws_closed") {
    removeWorkstream(e.ws_id);
  }
}

// ---------- one workstream's events ----------

function connect(ws) {
  ws.source = new EventSource(`/v1/api/events?ws_id=${encodeURIComponent(ws.id)}`);
  ws.source.onmessage = (m) => onEvent(ws, JSON.parse(m.data));
}

function scroll(ws) {
  ws.view.scrollTop = ws.view.scrollHeight;
}

function note(id, text, kind) {
  const ws = app.streams.get(id);
  if (!ws) return;
  ws.view.append(el("div", `msg note ${kind || ""}`, text));
  scroll(ws);
}

function turnBlock(ws) {
  if (!ws.turn) {
    const block = el("div", "msg assistant");
    const reasoning = el("details", "reasoning");
    reasoning.append(el("summary", null, "Reasoning"));
    reasoning.hidden = true;
    const content = el("div", "content");
    block.append(reasoning, content);
    ws.view.append(block);
    ws.turn = { block, reasoning, content, text: "", pending: false };
  }
  return ws.turn;
}

function paint(ws) {
  const turn = ws.turn;
  if (!turn || turn.pending) return;
  turn.pending = true;
  requestAnimationFrame(() => {
    turn.pending = false;
    renderMarkdown(turn.content, turn.text);
    scroll(ws);
  });
}

function toolBlock(ws, item) {
  let tool = ws.tools.get(item.call_id);
  if (!tool) {
    tool = el("div", "tool");
    tool.dataset.call = item.call_id;
    const head = el("div", "head");
    head.append(el("b", null, item.func_name || item.header || "tool"), document.createTextNode(" " + (item.preview || "")));
    tool.append(head, el("pre", "output"));
    turnBlock(ws).block.append(tool);
    ws.tools.set(item.call_id, tool);
  }
  return tool;
}

function approvalBlock(ws, items) {
  const box = el("div", "approval");
  box.append(el("div", null, `Approve ${items.map((i) => i.approval_label || i.func_name).join(", ")}?`));
  const actions = el("div", "actions");
  const feedback = el("input", "feedback");
  feedback.placeholder = "Feedback (optional)";
  feedback.setAttribute("aria-label", "Feedback to the model with your answer (optional)");
  const answer = async (approved, always) => {
    try {
      await api("/v1/api/approve", { ws_id: ws.id, approved, always, feedback: feedback.value || null });
      box.classList.add("done");
      actions.remove();
      box.append(el("div", null, approved ? (always ? "Approved (always)" : "Approved") : "Denied"));
    } catch (e) { note(ws.id, e.message, "error"); }
  };
  const approve = el("button", "approve", "Approve");
  approve.addEventListener("click", () => answer(true, false));
  const deny = el("button", "deny", "Deny");
  deny.addEventListener("click", () => answer(false, false));
  const always = el("button", "always", "Always");
  always.addEventListener("click", () => answer(true, true));
  actions.append(approve, deny, always, feedback);
  box.append(actions);
  turnBlock(ws).block.append(box);
}

function planBlock(ws, content) {
  const box = el("div", "plan");
  const body = el("div", "content");
  renderMarkdown(body, content);
  const actions = el("div", "actions");
  const feedback = el("input", "feedback");
  feedback.placeholder = "What should change?";
  feedback.setAttribute("aria-label", "What should change in the plan");
  const send = async (text) => {
    try {
      await api("/v1/api/plan", { ws_id: ws.id, feedback: text });
      box.classList.add("done");
      actions.remove();
    } catch (e) { note(ws.id, e.message, "error"); }
  };
  const ok = el("button", "plan-approve", "Approve plan");
  ok.addEventListener("click", () => send(""));
  const change = el("button", "plan-changes", "Request changes");
  change.addEventListener("click", () => send(feedback.value || "Please revise the plan."));
  actions.append(ok, change, feedback);
  box.append(el("div", null, "Plan for review"), body, actions);
  turnBlock(ws).block.append(box);
}

function renderHistory(ws, messages) {
  ws.view.replaceChildren();
  if (!messages.length) ws.view.append(emptyState());
  ws.turn = null;
  ws.tools.clear();
  for (const m of messages) {
    if (m.role === "user") {
      ws.turn = null;
      ws.view.append(el("div", "msg user", m.content || ""));
    } else if (m.role === "assistant") {
      const turn = turnBlock(ws);
      if (m.content) { turn.text += (turn.text ? "\n\n" : "") + m.content; renderMarkdown(turn.content, turn.text); }
      for (const c of m.tool_calls || []) toolBlock(ws, { call_id: c.id, func_name: c.name, preview: c.arguments });
    } else if (m.role === "tool") {
      const tool = ws.tools.get(m.tool_call_id);
      if (tool) $("pre.output", tool).textContent = m.content || "";
    }
  }
  ws.turn = null;
  scroll(ws);
}

function onEvent(ws, e) {
  if (!["connected", "history", "clear_ui", "status"].includes(e.type)) {
    $(".empty", ws.view)?.remove();
  }
  switch (e.type) {
    case "connected":
      ws.alias = e.model_alias;
      ws.model = e.model || "";
      if (Array.isArray(e.models)) app.models = e.models;
      if (app.current === ws.id) refreshBar();
      break;
    case "history": renderHistory(ws, e.messages); break;
    case "clear_ui": ws.view.replaceChildren(emptyState()); ws.turn = null; ws.tools.clear(); break;
    case "thinking_start": ws.turn = null; turnBlock(ws); break;
    case "reasoning": {
      const turn = turnBlock(ws);
      turn.reasoning.hidden = false;
      turn.reasoning.append(document.createTextNode(e.text));
      break;
    }
    case "content": turnBlock(ws).text += e.text; paint(ws); break;
    case "tool_info": for (const item of e.items) toolBlock(ws, item); break;
    case "approve_request":
      for (const item of e.items) toolBlock(ws, item);
      approvalBlock(ws, e.items);
      break;
    case "tool_output_chunk": {
      const tool = ws.tools.get(e.call_id);
      if (tool) $("pre.output", tool).textContent += e.chunk + "\n";
      break;
    }
    case "tool_result": {
      const tool = toolBlock(ws, { call_id: e.call_id, func_name: e.name });
      $("pre.output", tool).textContent = e.output;
      tool.classList.add("finished");
      break;
    }
    case "status":
      ws.usage = `${e.total_tokens} tokens · ${e.pct}% of ${e.context_window} context`;
      if (app.current === ws.id) refreshBar();
      break;
    case "plan_review": planBlock(ws, e.content); break;
    case "info": note(ws.id, e.message); break;
    case "error": note(ws.id, e.message, "error"); break;
    case "busy_error": note(ws.id, e.message, "error"); break;
    case "stream_end": ws.turn = null; break;
    case "ws_closed": removeWorkstream(ws.id); break;
    default: break;
  }
  scroll(ws);
}

// ---------- composer and header ----------

$("#composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("#input");
  const text = input.value.trim();
  const ws = app.streams.get(app.current);
  if (!text || !ws) return;
  if (text.startsWith("/")) {
    input.value = "";
    try { await api("/v1/api/command", { ws_id: ws.id, command: text }); }
    catch (e) { note(ws.id, e.message, "error"); }
    return;
  }
  try {
    const r = await api("/v1/api/send", { ws_id: ws.id, message: text });
    if (r.status === "ok") {
      input.value = "";
      ws.turn = null;
      $(".empty", ws.view)?.remove();
      ws.view.append(el("div", "msg user", text));
      scroll(ws);
    }
  } catch (e) { note(ws.id, e.message, "error"); }
});

$("#input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("#composer").requestSubmit();
  }
});

$("#new-ws").addEventListener("click", async () => {
  try {
    const r = await api("/v1/api/workstreams/new", {});
    addWorkstream(r.ws_id, r.name, "idle");
    select(r.ws_id);
  } catch (e) { note(app.current, e.message, "error"); }
});

$("#model-select").addEventListener("change", async (ev) => {
  const ws = app.streams.get(app.current);
  if (ws) await api("/v1/api/command", { ws_id: ws.id, command: `/model ${ev.target.value}` });
});

$("#sessions-btn").addEventListener("click", async () => {
  const panel = $("#sessions");
  const button = $("#sessions-btn");
  if (!panel.hidden) { panel.hidden = true; button.setAttribute("aria-expanded", "false"); return; }
  const r = await api("/v1/api/sessions");
  panel.replaceChildren();
  if (!r.sessions.length) panel.append(el("div", "session", "No saved sessions."));
  for (const s of r.sessions) {
    const row = el("div", "session");
    row.dataset.session = s.session_id;
    row.append(el("span", null, s.alias || s.title || s.session_id.slice(0, 12)),
      el("small", null, `  ${s.message_count} messages · ${s.updated}`));
    row.addEventListener("click", async () => {
      panel.hidden = true;
      button.setAttribute("aria-expanded", "false");
      try {
        const created = await api("/v1/api/workstreams/new", { resume_session: s.session_id });
        addWorkstream(created.ws_id, created.name, "idle");
        select(created.ws_id);
      } catch (e) { note(app.current, e.message, "error"); }
    });
    panel.append(row);
  }
  panel.hidden = false;
  button.setAttribute("aria-expanded", "true");
});

window.turnstone.signIn({ probe: "/v1/api/workstreams", onReady: openApp })
  .catch((e) => { document.body.append(el("p", "error", `Turnstone: ${e.message}`)); });
