// Injected by turnstone-console into a node's page seen through its proxy: the page's
// root-relative fetch and EventSource URLs go to /node/{id}/… instead of the console's root.
(function () {
  "use strict";
  var me = document.currentScript;
  var prefix = me && me.getAttribute("data-prefix");
  if (!prefix) return;
  function fix(u) {
    if (typeof u === "string") {
      if (u.charAt(0) === "/" && u.charAt(1) !== "/" && u.indexOf(prefix + "/") !== 0) return prefix + u;
      return u;
    }
    if (u instanceof URL && u.origin === location.origin && u.pathname.indexOf(prefix + "/") !== 0) {
      var copy = new URL(u.href);
      copy.pathname = prefix + u.pathname;
      return copy;
    }
    return u;
  }
  var originalFetch = window.fetch;
  window.fetch = function (u, o) {
    if (typeof Request !== "undefined" && u instanceof Request) {
      var url = new URL(u.url);
      if (url.origin === location.origin) u = new Request(fix(url), u);
      return originalFetch.call(this, u, o);
    }
    return originalFetch.call(this, fix(u), o);
  };
  var OriginalEventSource = window.EventSource;
  function ProxiedEventSource(u, o) { return new OriginalEventSource(fix(u), o); }
  ProxiedEventSource.prototype = OriginalEventSource.prototype;
  ProxiedEventSource.CONNECTING = OriginalEventSource.CONNECTING;
  ProxiedEventSource.OPEN = OriginalEventSource.OPEN;
  ProxiedEventSource.CLOSED = OriginalEventSource.CLOSED;
  window.EventSource = ProxiedEventSource;
})();
