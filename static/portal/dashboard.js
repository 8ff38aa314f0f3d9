/* Fleet dashboard: re-read the dashboard body every data-refresh-ms and swap it in place.
 *
 * The server draws the charts (inline SVG), so a refresh is one GET of an HTML partial. A
 * failed refresh keeps the last good numbers and tries again on the next tick. Without
 * JavaScript the page is complete; a reload shows fresh numbers.
 */
(function () {
  "use strict";

  var box = document.getElementById("dashboard");
  if (!box) return;
  var url = box.getAttribute("data-live-url");
  var every = parseInt(box.getAttribute("data-refresh-ms") || "30000", 10);

  function refresh() {
    if (document.hidden) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("dashboard refresh: " + response.status);
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
