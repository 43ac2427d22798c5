// Live refresh: every element with data-refresh is redrawn every two seconds from its URL (a
// part of the page rendered, and escaped, by the service). A failed refresh keeps what is
// shown and marks it stale; nothing refreshes while the tab is hidden or while a form in the
// part is being filled in.
"use strict";
(function () {
  var PERIOD_MS = 2000;
  var stamp = document.getElementById("refreshed");

  // A part someone is typing into (a cancel reason) is left alone until they are done.
  function inUse(element) {
    var active = document.activeElement;
    if (active && active !== document.body && element.contains(active)) { return true; }
    return Array.prototype.some.call(element.querySelectorAll("input[type=text]"), function (input) {
      return input.value !== "";
    });
  }

  function refresh(element) {
    if (inUse(element)) { return Promise.resolve(true); }
    return fetch(element.getAttribute("data-refresh"), {
      credentials: "same-origin",
      headers: { "Accept": "text/html" },
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (html) {
      element.innerHTML = html;
      element.removeAttribute("data-stale");
      return true;
    }).catch(function () {
      element.setAttribute("data-stale", "true");
      return false;
    });
  }

  function tick() {
    if (document.hidden) { return; }
    var parts = Array.prototype.slice.call(document.querySelectorAll("[data-refresh]"));
    if (parts.length === 0) { return; }
    Promise.all(parts.map(refresh)).then(function (done) {
      if (!stamp) { return; }
      var ok = done.every(Boolean);
      stamp.textContent = (ok ? "updated " : "not updated (the service did not answer) ") +
        new Date().toLocaleTimeString();
      stamp.className = ok ? "" : "bad";
    });
  }

  setInterval(tick, PERIOD_MS);
})();
