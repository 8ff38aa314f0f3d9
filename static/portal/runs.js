/* Run pages: keep the run list and a run's timeline live, confirm grave controls.
 *
 * The element with data-live-url polls that URL every data-poll-ms with If-None-Match, so an
 * unchanged run costs a 304 with no body. A changed partial is swapped in place, except while
 * someone is typing a reason in it. A run that has finished (data-active="0") stops polling.
 * Without JavaScript every page and control works as a plain page.
 */
(function () {
  "use strict";

  var box = document.querySelector("[data-live-url]");
  var timer = null;

  function relative(iso) {
    var seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (seconds < 45) return "just now";
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) return minutes + " min ago";
    var hours = Math.floor(minutes / 60);
    if (hours < 24) return hours + " h " + (minutes % 60) + " min ago";
    var days = Math.floor(hours / 24);
    return days + (days === 1 ? " day ago" : " days ago");
  }

  function refreshAges() {
    document.querySelectorAll("time[data-relative]").forEach(function (el) {
      el.textContent = relative(el.getAttribute("datetime"));
    });
  }

  // Controls that stop work ask first; the server still decides what is legal.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });

  refreshAges();
  window.setInterval(refreshAges, 30000);
  if (!box) return;

  var url = box.getAttribute("data-live-url") + window.location.search;
  var pollMs = parseInt(box.getAttribute("data-poll-ms") || "2000", 10);
  var version = box.getAttribute("data-version") || "";
  if (version && version.charAt(0) !== '"') version = '"' + version + '"';

  function active() {
    var marker = box.querySelector("[data-active]");
    return !marker || marker.getAttribute("data-active") !== "0";
  }

  // Someone writing a reason keeps the form they are writing in.
  function typing() {
    var focused = document.activeElement;
    if (focused && box.contains(focused) && focused.matches("input, textarea, select")) return true;
    return Array.prototype.some.call(box.querySelectorAll("input[name=reason]"), function (input) {
      return input.value.trim() !== "";
    });
  }

  function schedule() {
    window.clearTimeout(timer);
    if (!active()) return;
    timer = window.setTimeout(poll, document.hidden ? pollMs * 5 : pollMs);
  }

  function poll() {
    var headers = { "X-Requested-With": "fetch" };
    if (version) headers["If-None-Match"] = version;
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: headers })
      .then(function (response) {
        if (response.redirected || response.status === 403 || response.status === 404) {
          box.classList.add("is-offline");
          return null; // signed out or gone: stop; the next click explains
        }
        box.classList.remove("is-offline");
        if (response.status === 304 || !response.ok || typing()) {
          schedule();
          return null;
        }
        var next = response.headers.get("ETag") || "";
        return response.text().then(function (html) {
          version = next;
          box.innerHTML = html;
          refreshAges();
          schedule();
        });
      })
      .catch(function () {
        box.classList.add("is-offline");
        schedule();
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && active()) poll();
  });
  schedule();
})();
