// Turnstone console, admin view: users with their API tokens and chat links, and schedules
// with their runs, over the console's admin API (scope approve).
"use strict";

(function () {
  // `$`, `el` and `toast` are console.js's.
  const enc = encodeURIComponent;
  const ADMIN = "/v1/api/admin";
  const state = { user: null, editing: null, runsOf: null, previewTimer: null };

  const call = (method, path, body) => window.turnstone.api(path, body, method);

  function button(text, label, onClick, cls) {
    const b = el("button", cls, text);
    b.type = "button";
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }

  function cells(row, values) {
    for (const v of values) {
      const td = el("td");
      if (v instanceof Node) td.append(v); else td.textContent = v == null ? "" : String(v);
      row.append(td);
    }
    return row;
  }

  function confirmDelete(text) {
    const modal = $("#confirm-modal");
    $("#confirm-text").textContent = text;
    modal.returnValue = "";
    return new Promise((resolve) => {
      modal.addEventListener("close", () => resolve(modal.returnValue === "yes"), { once: true });
      modal.showModal();
    });
  }

  function formBody(form) {
    const body = {};
    for (const [k, v] of new FormData(form).entries()) body[k] = String(v).trim();
    return body;
  }

  function unavailable(e) {
    const p = $("#admin-unavailable");
    p.hidden = false;
    p.textContent = e.status === 403
      ? "Administration needs a token with the approve scope."
      : `Administration is unavailable: ${e.message}`;
  }

  // ---------- users ----------

  async function loadUsers() {
    let data;
    try { data = await call("GET", `${ADMIN}/users`); } catch (e) { unavailable(e); return; }
    $("#admin-unavailable").hidden = true;
    const body = $("#user-table tbody");
    body.replaceChildren();
    for (const u of data.users) {
      const actions = el("span");
      actions.append(
        button("Tokens and links", `Tokens and chat links of ${u.username}`, () => openUser(u)),
        button("Delete", `Delete user ${u.username}`, async () => {
          if (!(await confirmDelete(`Delete ${u.username} with their tokens and chat links?`))) return;
          try {
            await call("DELETE", `${ADMIN}/users/${enc(u.user_id)}`);
            if (state.user && state.user.user_id === u.user_id) closeUser();
            loadUsers();
          } catch (e) { $("#user-error").textContent = e.message; }
        }, "danger"),
      );
      const row = cells(el("tr"), [u.username, u.display_name, u.created, actions]);
      row.dataset.user = u.username;
      body.append(row);
    }
    $("#users-empty").hidden = data.users.length > 0;
  }

  $("#user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#user-error").textContent = "";
    try {
      await call("POST", `${ADMIN}/users`, formBody(ev.target));
      ev.target.reset();
      loadUsers();
    } catch (e) { $("#user-error").textContent = e.message; }
  });

  function closeUser() {
    state.user = null;
    $("#user-detail").hidden = true;
  }

  async function openUser(u) {
    state.user = u;
    $("#user-detail").hidden = false;
    $("#user-detail-title").textContent = `Tokens and chat links of ${u.username}`;
    $("#token-new").hidden = true;
    await Promise.all([loadTokens(), loadLinks()]);
  }

  async function loadTokens() {
    const u = state.user;
    const data = await call("GET", `${ADMIN}/users/${enc(u.user_id)}/tokens`);
    const body = $("#token-table tbody");
    body.replaceChildren();
    for (const t of data.tokens) {
      const revoke = button("Revoke", `Revoke token ${t.name || t.token_prefix}`, async () => {
        if (!(await confirmDelete(`Revoke token ${t.token_prefix}…? Requests with it are refused at once.`))) return;
        try { await call("DELETE", `${ADMIN}/tokens/${enc(t.token_id)}`); loadTokens(); }
        catch (e) { $("#token-error").textContent = e.message; }
      }, "danger");
      body.append(cells(el("tr"), [t.name, `${t.token_prefix}…`, t.scopes, t.created, t.expires || "never", revoke]));
    }
  }

  $("#token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#token-error").textContent = "";
    const body = formBody(ev.target);
    if (body.expires_days) body.expires_days = Number(body.expires_days); else delete body.expires_days;
    try {
      const made = await call("POST", `${ADMIN}/users/${enc(state.user.user_id)}/tokens`, body);
      $("#token-secret").textContent = made.token;
      $("#token-new").hidden = false;
      ev.target.reset();
      loadTokens();
    } catch (e) { $("#token-error").textContent = e.message; }
  });

  $("#token-copy").addEventListener("click", async () => {
    const secret = $("#token-secret").textContent;
    try {
      await navigator.clipboard.writeText(secret);
      $("#token-copy").textContent = "Copied";
    } catch (_) {
      // No clipboard permission: select the text for the user to copy.
      const range = document.createRange();
      range.selectNodeContents($("#token-secret"));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      $("#token-copy").textContent = "Selected — press Ctrl+C";
    }
    setTimeout(() => { $("#token-copy").textContent = "Copy token"; }, 3000);
  });

  async function loadLinks() {
    const u = state.user;
    const data = await call("GET", `${ADMIN}/users/${enc(u.user_id)}/channels`);
    const body = $("#link-table tbody");
    body.replaceChildren();
    for (const c of data.channels) {
      const unlink = button("Unlink", `Unlink ${c.channel_type} account ${c.channel_user_id}`, async () => {
        if (!(await confirmDelete(`Unlink ${c.channel_type} account ${c.channel_user_id}?`))) return;
        try {
          await call("DELETE", `${ADMIN}/channels/${enc(c.channel_type)}/${enc(c.channel_user_id)}`);
          loadLinks();
        } catch (e) { $("#link-error").textContent = e.message; }
      }, "danger");
      body.append(cells(el("tr"), [c.channel_type, c.channel_user_id, c.created, unlink]));
    }
  }

  $("#link-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#link-error").textContent = "";
    try {
      await call("POST", `${ADMIN}/users/${enc(state.user.user_id)}/channels`, formBody(ev.target));
      ev.target.reset();
      loadLinks();
    } catch (e) { $("#link-error").textContent = e.message; }
  });

  // ---------- schedules ----------

  function when(s) {
    if (s.schedule_type === "at") return `once at ${s.at_time}`;
    return s.timezone ? `${s.cron_expr} (${s.timezone})` : `${s.cron_expr} (UTC)`;
  }

  async function loadSchedules() {
    let data;
    try { data = await call("GET", `${ADMIN}/schedules`); } catch (e) { unavailable(e); return; }
    const body = $("#schedule-table tbody");
    body.replaceChildren();
    for (const s of data.schedules) {
      const toggle = el("input");
      toggle.type = "checkbox";
      toggle.checked = s.enabled;
      toggle.setAttribute("aria-label", `${s.enabled ? "Disable" : "Enable"} schedule ${s.name}`);
      toggle.addEventListener("change", async () => {
        try { await call("PUT", `${ADMIN}/schedules/${enc(s.task_id)}`, { enabled: toggle.checked }); }
        catch (e) { toast(e.message); toggle.checked = !toggle.checked; }
        loadSchedules();
      });
      const actions = el("span");
      actions.append(
        button("Edit", `Edit schedule ${s.name}`, () => openSchedule(s)),
        button("Runs", `Runs of schedule ${s.name}`, () => openRuns(s)),
        button("Delete", `Delete schedule ${s.name}`, async () => {
          if (!(await confirmDelete(`Delete schedule ${s.name} and its runs?`))) return;
          try {
            await call("DELETE", `${ADMIN}/schedules/${enc(s.task_id)}`);
            if (state.runsOf === s.task_id) $("#run-detail").hidden = true;
            loadSchedules();
          } catch (e) { toast(e.message); }
        }, "danger"),
      );
      const row = cells(el("tr"), [toggle, s.name, when(s), s.target_mode, s.next_run || "—", actions]);
      row.dataset.schedule = s.name;
      body.append(row);
    }
    $("#schedules-empty").hidden = data.schedules.length > 0;
    if (state.runsOf) loadRuns();
  }

  function scheduleKind() {
    const kind = $("#schedule-form").elements.schedule_type.value;
    for (const e of document.querySelectorAll("#schedule-form .cron-only")) e.hidden = kind !== "cron";
    for (const e of document.querySelectorAll("#schedule-form .at-only")) e.hidden = kind !== "at";
  }

  function fillTargets(selected) {
    const select = $("#schedule-target");
    for (const o of [...select.options]) if (o.dataset.node) o.remove();
    const nodes = (window.consoleApp && window.consoleApp.nodes) || [];
    const ids = nodes.map((n) => n.node_id);
    if (selected && !["auto", "pool", "all"].includes(selected) && !ids.includes(selected)) ids.push(selected);
    for (const id of ids) {
      const o = el("option", "", `Node ${id}`);
      o.value = id;
      o.dataset.node = "1";
      select.append(o);
    }
    select.value = selected || "auto";
  }

  function openSchedule(s) {
    state.editing = s ? s.task_id : null;
    const f = $("#schedule-form");
    f.reset();
    $("#schedule-title").textContent = s ? `Edit ${s.name}` : "New schedule";
    $("#schedule-error").textContent = "";
    if (s) {
      for (const k of ["name", "description", "schedule_type", "cron_expr", "at_time", "timezone", "model", "initial_message", "retry_window"]) {
        f.elements[k].value = s[k] == null ? "" : s[k];
      }
      f.elements.auto_approve.checked = s.auto_approve;
      f.elements.enabled.checked = s.enabled;
      f.elements.auto_approve_tools.value = (s.auto_approve_tools || []).join(", ");
    }
    fillTargets(s ? s.target_mode : "auto");
    scheduleKind();
    $("#schedule-preview").replaceChildren();
    $("#schedule-modal").showModal();
    preview();
  }

  async function preview() {
    const f = $("#schedule-form").elements;
    const list = $("#schedule-preview");
    const q = new URLSearchParams({
      schedule_type: f.schedule_type.value,
      cron_expr: f.cron_expr.value.trim(),
      at_time: f.at_time.value.trim(),
      timezone: f.timezone.value.trim() === "UTC" ? "" : f.timezone.value.trim(),
      count: "5",
    });
    if (!f.cron_expr.value.trim() && !f.at_time.value.trim()) { list.replaceChildren(); return; }
    try {
      const p = await call("GET", `${ADMIN}/schedules/preview?${q}`);
      list.replaceChildren(...p.next_runs.map((t, i) => el("li", "", p.timezone === "UTC" ? t : `${t} (${p.local[i]})`)));
      if (p.next_runs.length === 0) list.replaceChildren(el("li", "empty", "never — the time has passed"));
    } catch (e) {
      list.replaceChildren(el("li", "error", e.message));
    }
  }

  function previewSoon() {
    clearTimeout(state.previewTimer);
    state.previewTimer = setTimeout(preview, 250);
  }

  for (const name of ["cron_expr", "at_time", "timezone"]) {
    $("#schedule-form").elements[name].addEventListener("input", previewSoon);
  }
  $("#schedule-form").elements.schedule_type.addEventListener("change", () => { scheduleKind(); preview(); });
  $("#schedule-new").addEventListener("click", () => openSchedule(null));
  $("#schedule-cancel").addEventListener("click", () => $("#schedule-modal").close());

  $("#schedule-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    const tz = f.timezone.value.trim();
    const body = {
      name: f.name.value.trim(),
      description: f.description.value.trim(),
      schedule_type: f.schedule_type.value,
      cron_expr: f.schedule_type.value === "cron" ? f.cron_expr.value.trim() : "",
      at_time: f.schedule_type.value === "at" ? f.at_time.value.trim() : "",
      timezone: tz === "UTC" ? "" : tz,
      target_mode: f.target_mode.value,
      model: f.model.value.trim(),
      initial_message: f.initial_message.value.trim(),
      auto_approve: f.auto_approve.checked,
      auto_approve_tools: f.auto_approve_tools.value.split(",").map((t) => t.trim()).filter(Boolean),
      enabled: f.enabled.checked,
      retry_window: Number(f.retry_window.value) || 0,
    };
    try {
      if (state.editing) await call("PUT", `${ADMIN}/schedules/${enc(state.editing)}`, body);
      else await call("POST", `${ADMIN}/schedules`, body);
      $("#schedule-modal").close();
      loadSchedules();
    } catch (e) { $("#schedule-error").textContent = e.message; }
  });

  async function openRuns(s) {
    state.runsOf = s.task_id;
    $("#run-detail").hidden = false;
    $("#run-title").textContent = `Runs of ${s.name}`;
    await loadRuns();
  }

  async function loadRuns() {
    let data;
    try { data = await call("GET", `${ADMIN}/schedules/${enc(state.runsOf)}/runs?limit=50`); }
    catch (e) { $("#run-detail").hidden = true; state.runsOf = null; return; }
    const body = $("#run-table tbody");
    body.replaceChildren();
    for (const r of data.runs) {
      const row = cells(el("tr"), [r.started, r.scheduled_for, r.status, r.node_id, r.correlation_id, r.error]);
      row.className = r.status === "failed" ? "unreachable" : "";
      body.append(row);
    }
    if (data.runs.length === 0) {
      const row = el("tr");
      const td = el("td", "empty", "Not fired yet.");
      td.colSpan = 6;
      row.append(td);
      body.append(row);
    }
  }

  let timer = null;
  window.consoleAdmin = {
    show() {
      loadUsers();
      loadSchedules();
      clearInterval(timer);
      // Runs and next firings move on their own: look again while the view is open.
      timer = setInterval(() => {
        if ($("#view-admin").hidden) { clearInterval(timer); return; }
        loadSchedules();
      }, 3000);
    },
  };
})();
