/* Approval inbox: open requests in place, keep the list live, count bulk selections.
 *
 * The list polls inbox/list/ every 3 s with If-None-Match, so an idle inbox costs a 304 with
 * no body. A changed list is swapped in place; the selected request and ticked boxes stay.
 * Without JavaScript every link and form still works as a plain page.
 */
(function () {
  "use strict";

  var POLL_MS = 3000;
  var root = document.querySelector("[data-inbox]");
  if (!root) return;
  var listBox = document.getElementById("inbox-list");
  var detailBox = document.getElementById("inbox-detail");
  var bulkCount = document.getElementById("bulk-count");
  var listUrl = root.getAttribute("data-list-url");
  var inboxUrl = root.getAttribute("data-inbox-url");
  var version = listBox.getAttribute("data-version") || "";
  if (version && version.charAt(0) !== '"') version = '"' + version + '"';
  var timer = null;
  var detailRequest = 0;

  function selectedId() {
    var article = detailBox.querySelector("[data-request-id]");
    return article ? article.getAttribute("data-request-id") : null;
  }

  function currentPage() {
    var head = listBox.querySelector("[data-page]");
    return head ? head.getAttribute("data-page") : "1";
  }

  function markSelection() {
    var id = selectedId();
    listBox.querySelectorAll(".request-item").forEach(function (item) {
      item.classList.toggle("is-selected", item.getAttribute("data-id") === id);
    });
  }

  function updateBulk() {
    var n = listBox.querySelectorAll("input[name=ids]:checked").length;
    if (bulkCount) bulkCount.textContent = String(n);
    document.querySelectorAll("[data-bulk-submit]").forEach(function (button) {
      button.disabled = n === 0;
    });
  }

  // "5 minutes ago" stays true between polls: ages are recomputed here from datetime attrs.
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

  function loadDetail(url, push) {
    var ticket = ++detailRequest;
    detailBox.classList.add("is-loading");
    var sep = url.indexOf("?") === -1 ? "?" : "&";
    return fetch(url + sep + "partial=1", { credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected || !response.ok) {
          window.location.href = url; // signed out or gone: let the full page explain
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html === null || ticket !== detailRequest) return;
        detailBox.innerHTML = html;
        detailBox.scrollTop = 0;
        if (push) window.history.pushState({ detail: url }, "", url);
        markSelection();
        refreshAges();
      })
      .catch(function () {
        window.location.href = url;
      })
      .finally(function () {
        if (ticket === detailRequest) detailBox.classList.remove("is-loading");
      });
  }

  function swapList(html) {
    var before = {};
    listBox.querySelectorAll(".request-item").forEach(function (item) {
      before[item.getAttribute("data-id")] = item.getAttribute("data-approvals");
    });
    var checked = {};
    listBox.querySelectorAll("input[name=ids]:checked").forEach(function (box) {
      checked[box.value] = true;
    });
    var scroll = listBox.scrollTop;
    listBox.innerHTML = html;
    listBox.scrollTop = scroll;
    listBox.querySelectorAll(".request-item").forEach(function (item) {
      var id = item.getAttribute("data-id");
      if (!(id in before)) item.classList.add("is-new");
      var box = item.querySelector("input[name=ids]");
      if (box && checked[id]) box.checked = true;
    });
    markSelection();
    updateBulk();
    refreshAges();
    // The open request was decided elsewhere or got another approval: show its new state.
    var id = selectedId();
    var article = detailBox.querySelector("[data-request-id]");
    if (id && article && article.getAttribute("data-status") === "pending") {
      var row = listBox.querySelector('.request-item[data-id="' + id + '"]');
      var changed = !row || row.getAttribute("data-approvals") !== article.getAttribute("data-approvals");
      if (changed && !detailBox.querySelector("textarea:focus")) {
        loadDetail(window.location.pathname, false);
      }
    }
  }

  function setOnline(online) {
    root.classList.toggle("is-offline", !online);
  }

  function poll() {
    var headers = { "X-Requested-With": "fetch" };
    if (version) headers["If-None-Match"] = version;
    fetch(listUrl + "?page=" + encodeURIComponent(currentPage()), {
      credentials: "same-origin",
      cache: "no-store",
      headers: headers,
    })
      .then(function (response) {
        if (response.redirected || response.status === 403) {
          setOnline(false);
          return null; // signed out: stop polling, the next click goes to sign-in
        }
        setOnline(true);
        schedule();
        if (response.status === 304 || !response.ok) return null;
        version = response.headers.get("ETag") || "";
        return response.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined) swapList(html);
      })
      .catch(function () {
        setOnline(false);
        schedule();
      });
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
  }

  listBox.addEventListener("click", function (event) {
    var link = event.target.closest("a.request-link");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    loadDetail(link.getAttribute("href"), true);
  });
  listBox.addEventListener("change", function (event) {
    if (event.target.matches("input[name=ids]")) updateBulk();
  });
  window.addEventListener("popstate", function () {
    if (window.location.pathname === inboxUrl) {
      window.location.reload();
    } else {
      loadDetail(window.location.pathname, false);
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll();
  });

  markSelection();
  updateBulk();
  refreshAges();
  window.setInterval(refreshAges, 30000);
  schedule();
})();
