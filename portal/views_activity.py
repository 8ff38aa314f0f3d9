"""The live activity stream page and its server-sent events.

The page paints the newest events; ``static/portal/activity.js`` then follows
``/activity/stream/``: one SSE message per poll carrying every new event as a JSON batch, its
``id`` the last seq, so the browser's EventSource resumes where it left off
(``Last-Event-ID``) when the bounded stream closes and it reconnects.

A stream holds its worker thread (and a database connection) while it is open: under
``manage.py runserver`` (threaded) that is free; in production run ``/activity/stream/`` on
threaded or async workers (gunicorn ``--worker-class gthread --threads N``) — a sync worker
is held for at most ``AUTONOMY_ACTIVITY_STREAM_SECONDS``, then the browser reconnects.
"""

import json
import threading
import time
from collections.abc import Iterator
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from agents.models import BusinessUnit
from agents.portal_roles import is_portal_person
from autonomy.models import Connector, Verdict
from autonomy.observability import activity

PAGE_EVENTS = 100
TRACE_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"  # the script puts the action id in


def may_watch(*, user) -> bool:
    """People of the portal (every portal role, viewers too) watch the fleet; agents never."""
    return is_portal_person(user)


def watcher_required(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not may_watch(user=request.user):
            raise PermissionDenied("The activity stream is for portal staff.")
        return view(request, *args, **kwargs)

    return wrapped


@watcher_required
@require_GET
def activity_page(request: HttpRequest) -> HttpResponse:
    filters = activity.ActivityFilters.from_query(request.GET)
    head = activity.activity_head()
    events = activity.activity_since(
        after_seq=None, filters=filters, limit=PAGE_EVENTS, until_seq=head
    )
    events.reverse()  # newest first
    stream_query = {**filters.as_query(), "after": str(head)}
    stream_url = reverse("observability:activity-stream") + "?" + urlencode(stream_query)
    return render(
        request,
        "portal/activity.html",
        {
            "events": events,
            "filters": filters,
            "head": head,
            "stream_url": stream_url,
            "trace_url": reverse("observability:action-trace", args=[TRACE_PLACEHOLDER]),
            "units": BusinessUnit.objects.order_by("name").values_list("slug", "name"),
            "connectors": Connector.objects.order_by("slug").values_list("slug", "name"),
            "verdicts": Verdict.choices,
            "max_rows": activity.MAX_LIMIT,
        },
    )


def _sse(seq: int | None, events: list[dict] | None) -> str:
    lines = [f"id: {seq}"] if seq is not None else []
    if events is not None:
        lines += ["event: batch", "data: " + json.dumps(events, cls=DjangoJSONEncoder)]
    return "\n".join(lines) + "\n\n"


def event_stream(
    *, after: int, filters: activity.ActivityFilters, duration: float, poll: float, beat: float
) -> Iterator[str]:
    """Poll the trail by seq and yield one SSE message per poll with new events.

    Reads ``(after, head]`` each time so a filter matching nothing still moves forward; an
    idle heartbeat carries the head as its ``id`` for the same reason.
    """
    global _open_streams
    with _open_lock:
        _open_streams += 1
    try:
        yield from _poll(after=after, filters=filters, duration=duration, poll=poll, beat=beat)
    finally:
        with _open_lock:
            _open_streams -= 1


def open_streams() -> int:
    """How many streams this process serves now (each holds a thread and a connection)."""
    return _open_streams


_open_streams = 0
_open_lock = threading.Lock()


def _poll(*, after, filters, duration, poll, beat) -> Iterator[str]:
    yield f"retry: 1000\n: stream opened after {after}\n\n"
    started = last_sent = time.monotonic()
    while True:
        head = activity.activity_head()
        if head > after:
            events = activity.activity_since(after_seq=after, filters=filters, until_seq=head)
            full = len(events) == activity.MAX_LIMIT
            after = events[-1]["seq"] if full else head
            if events:
                yield _sse(after, events)
                last_sent = time.monotonic()
            if full:
                continue  # more waiting: read on without a pause
        now = time.monotonic()
        if now - last_sent >= beat:
            yield _sse(after, None).rstrip("\n") + "\n: heartbeat\n\n"
            last_sent = now
        if now - started >= duration:
            yield ": closing; the browser reconnects\n\n"
            return
        time.sleep(poll)


@watcher_required
@require_GET
def activity_stream(request: HttpRequest) -> StreamingHttpResponse:
    filters = activity.ActivityFilters.from_query(request.GET)
    after = activity.parse_seq(request.headers.get("Last-Event-ID"))
    if after is None:
        after = activity.parse_seq(request.GET.get("after"))
    if after is None:
        after = activity.activity_head()
    response = StreamingHttpResponse(
        event_stream(
            after=after,
            filters=filters,
            duration=float(getattr(settings, "AUTONOMY_ACTIVITY_STREAM_SECONDS", 300)),
            poll=float(getattr(settings, "AUTONOMY_ACTIVITY_POLL_SECONDS", 0.25)),
            beat=float(getattr(settings, "AUTONOMY_ACTIVITY_HEARTBEAT_SECONDS", 15)),
        ),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each message on at once
    return response
