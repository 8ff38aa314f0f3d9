/* Live activity stream: follow /activity/stream/ (server-sent events) and keep the table live.
 *
 * The server sends one message per poll with every new event as a JSON batch; its id is the
 * last seq, so EventSource resumes with Last-Event-ID when the bounded stream closes. Batches
 * are queued and drawn once per animation frame, newest on top; the table keeps at most
 * data-max-rows rows, so hundreds of events per second cost one DOM update per frame.
 * "Pause" stops drawing (events keep arriving and are drawn on resume, still capped).
 * Without JavaScript the page is a plain list of the newest events.
 */
(function () {
  "use strict";

  var root = document.querySelector("[data-activity]");
  if (!root || !window.EventSource) return;
  var rows = document.getElementById("activity-rows");
  var empty = document.getElementById("activity-empty");
  var state = document.getElementById("stream-state");
  var stateText = state.querySelector(".stream-state-text");
  var pauseButton = document.getElementById("stream-pause");
  var count = document.getElementById("stream-count");
  var maxRows = parseInt(root.getAttribute("data-max-rows"), 10) || 200;
  var traceUrl = root.getAttribute("data-trace-url");
  var placeholder = "00000000-0000-0000-0000-000000000000";
  var lastSeq = parseInt(rows.getAttribute("data-head"), 10) || 0;
  var queue = [];
  var frame = 0;
  var paused = false;
  var received = 0;
  var source = null;

  function setState(name, text) {
    state.setAttribute("data-state", name);
    stateText.textContent = text;
  }

  function cell(tr, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function span(parent, className, text) {
    var el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    parent.appendChild(el);
    return el;
  }

  function riskClass(score) {
    return score >= 70 ? "high" : score >= 40 ? "medium" : "low";
  }

  function row(e) {
    var tr = document.createElement("tr");
    tr.className = "activity-row is-new tone-" + e.tone;
    tr.setAttribute("data-seq", e.seq);
    tr.setAttribute("data-kind", e.kind);
    var time = document.createElement("time");
    time.setAttribute("datetime", e.time);
    time.textContent = e.time.slice(11, 19);
    cell(tr, "nowrap").appendChild(time);
    span(cell(tr), "kind kind-" + e.tone, e.label);
    var who = cell(tr);
    if (e.agent) {
      span(who, "agent-name", e.agent.name);
      var unit = document.createElement("div");
      unit.className = "small muted";
      unit.textContent = e.business_unit ? e.business_unit.name : "";
      who.appendChild(unit);
    } else {
      span(who, "muted", e.actor || "—");
    }
    var op = cell(tr);
    if (e.operation) {
      var code = document.createElement("code");
      code.textContent = e.operation;
      op.appendChild(code);
    } else {
      span(op, "muted", "—");
    }
    var verdict = cell(tr);
    if (e.verdict) span(verdict, "verdict-chip verdict-" + e.verdict, e.verdict_label);
    var risk = cell(tr, "num");
    if (e.risk_score !== null && e.risk_score !== undefined) {
      var badge = span(risk, "risk risk-" + riskClass(e.risk_score), String(e.risk_score));
      badge.title = "Risk score " + e.risk_score + " of 100";
    }
    cell(tr, "summary").textContent = e.summary;
    var link = cell(tr);
    if (e.action_id) {
      var a = document.createElement("a");
      a.className = "trace-link";
      a.href = traceUrl.replace(placeholder, e.action_id);
      a.title = e.action_id;
      a.textContent = e.action_id.slice(0, 8);
      link.appendChild(a);
    }
    return tr;
  }

  function draw() {
    frame = 0;
    if (paused || !queue.length) return;
    var batch = queue.length > maxRows ? queue.slice(queue.length - maxRows) : queue;
    queue = [];
    var fragment = document.createDocumentFragment();
    for (var i = batch.length - 1; i >= 0; i--) fragment.appendChild(row(batch[i]));
    rows.querySelectorAll(".is-new").forEach(function (tr) {
      tr.classList.remove("is-new");
    });
    rows.insertBefore(fragment, rows.firstChild);
    while (rows.children.length > maxRows) rows.removeChild(rows.lastChild);
    empty.hidden = rows.children.length > 0;
  }

  function schedule() {
    if (!frame && !paused) frame = window.requestAnimationFrame(draw);
  }

  function onBatch(message) {
    var events;
    try {
      events = JSON.parse(message.data);
    } catch (err) {
      return;
    }
    for (var i = 0; i < events.length; i++) {
      if (events[i].seq <= lastSeq) continue; // already shown (a resumed stream)
      lastSeq = events[i].seq;
      queue.push(events[i]);
    }
    if (queue.length > maxRows) queue = queue.slice(queue.length - maxRows);
    received += events.length;
    count.textContent = received + " new event" + (received === 1 ? "" : "s") + " since the page opened";
    if (paused) {
      stateText.textContent = "paused · " + queue.length + " waiting";
    }
    schedule();
  }

  function connect() {
    source = new EventSource(root.getAttribute("data-stream-url"));
    source.addEventListener("open", function () {
      if (!paused) setState("live", "live");
    });
    source.addEventListener("batch", onBatch);
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        setState("offline", "offline — reload the page");
      } else if (!paused) {
        setState("connecting", "reconnecting…");
      }
    });
  }

  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      setState("paused", "paused · " + queue.length + " waiting");
    } else {
      setState(source && source.readyState === EventSource.OPEN ? "live" : "connecting",
        source && source.readyState === EventSource.OPEN ? "live" : "reconnecting…");
      schedule();
    }
  });

  window.__activityStream = { lastSeq: function () { return lastSeq; } };
  connect();
})();
