/* A rollout plan's page: re-read the live figures and criteria every data-refresh-ms and swap
 * them in place (one GET of an HTML partial, drawn on the server).
 *
 * A failed refresh keeps the last good figures and tries again on the next tick. Without
 * JavaScript the page is complete; a reload shows fresh figures.
 */
(function () {
  "use strict";

  var box = document.getElementById("rollout-live");
  if (!box) return;
  var url = box.getAttribute("data-live-url");
  var every = parseInt(box.getAttribute("data-refresh-ms") || "10000", 10);

  function refresh() {
    if (document.hidden) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("rollout refresh: " + response.status);
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
})();
