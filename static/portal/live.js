/* Live fragments: every element with data-live-url and data-refresh-ms (the fleet dashboard,
 * a rollout plan's figures) re-reads its HTML partial, drawn on the server, at that interval
 * and swaps it in place.
 *
 * A failed refresh keeps the last good content, marks the element is-offline and tries again
 * on the next tick. Hidden tabs do not poll. Without JavaScript the page is complete; a
 * reload shows fresh content.
 */
(function () {
  "use strict";

  function live(box) {
    var url = box.getAttribute("data-live-url");
    var every = parseInt(box.getAttribute("data-refresh-ms") || "30000", 10);

    function refresh() {
      if (document.hidden) return;
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok) throw new Error("live refresh: " + response.status);
          return response.text();
        })
        .then(function (html) {
          box.innerHTML = html;
          box.classList.remove("is-offline");
        })
        .catch(function () {
          box.classList.add("is-offline");
        });
    }

    window.setInterval(refresh, every);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) refresh();
    });
  }

  document.querySelectorAll("[data-live-url][data-refresh-ms]").forEach(live);
})();
