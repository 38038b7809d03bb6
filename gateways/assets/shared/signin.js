// Sign-in shared by the node UI and the console: JSON calls that carry the session cookie,
// the first-run setup and login forms (#auth, #setup-form, #login-form, #auth-error) and the
// log-out button (#logout). `turnstone.signIn({probe, onReady})` shows setup when the service
// asks for it, login when `probe` answers 401, and otherwise calls `onReady`.
"use strict";

window.turnstone = (() => {
  const $ = (sel) => document.querySelector(sel);

  // GET without a body, POST with one, or `method` as given.
  async function api(path, body, method) {
    const init = { method: method || (body === undefined ? "GET" : "POST"), credentials: "same-origin" };
    if (body !== undefined) {
      init.headers = { "content-type": "application/json" };
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (!r.ok) {
      const err = new Error((data && data.error) || `HTTP ${r.status}`);
      err.status = r.status;
      throw err;
    }
    return data;
  }

  function showAuth(which) {
    $("#app").hidden = true;
    $("#auth").hidden = false;
    $("#setup-form").hidden = which !== "setup";
    $("#login-form").hidden = which !== "login";
  }

  function formJson(form) {
    return Object.fromEntries(new FormData(form).entries());
  }

  async function signIn({ probe, onReady }) {
    const ready = () => { $("#auth").hidden = true; return onReady(); };
    $("#setup-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("/v1/api/auth/setup", formJson(ev.target));
        $("#logout").hidden = false;
        ready();
      } catch (e) { $("#auth-error").textContent = e.message; }
    });
    $("#login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = formJson(ev.target);
      if (!body.token) delete body.token;
      try {
        await api("/v1/api/auth/login", body);
        $("#logout").hidden = false;
        ready();
      } catch (e) { $("#auth-error").textContent = e.message; }
    });
    $("#logout").addEventListener("click", async () => {
      try { await api("/v1/api/auth/logout", {}); } finally { location.reload(); }
    });
    let status = { auth_enabled: false, setup_required: false };
    try { status = await api("/v1/api/auth/status"); } catch (_) { /* no auth routes */ }
    if (status.setup_required) return showAuth("setup");
    try {
      await api(probe);
    } catch (e) {
      if (e.status === 401) return showAuth("login");
      throw e;
    }
    $("#logout").hidden = !status.auth_enabled;
    return ready();
  }

  return { api, signIn };
})();
