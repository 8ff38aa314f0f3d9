"""``/metrics`` for Prometheus: fleet gauges read from the database at scrape time.

A custom collector runs a handful of small aggregate queries per scrape (the last five
minutes of rollups, counts over indexed status columns), so every web process answers the
same numbers without shared in-process counters. Open in development; otherwise a scrape
needs ``Authorization: Bearer $AUTONOMY_METRICS_TOKEN`` or a staff session.
"""

import hmac
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from agents.models import Agent, AgentStatus
from approvals.load import approval_load
from autonomy.models import ActivityRollup, Intervention, InterventionKind, Verdict
from portal.metrics_analytics import analytics_metrics
from portal.metrics_approvals import TOP_APPROVERS, approval_metrics
from workflows.models import Run, RunStatus

WINDOW = timedelta(minutes=5)


class FleetCollector:
    """Gauges of the fleet, computed from the database when scraped."""

    def collect(self):

        since = (timezone.now() - WINDOW).replace(second=0, microsecond=0)
        actions = GaugeMetricFamily(
            "autonomy_actions_last_5m",
            "Actions decided in the last five minutes, by verdict.",
            labels=["verdict"],
        )
        by_verdict = dict(
            ActivityRollup.objects.filter(minute__gte=since)
            .order_by()
            .values("verdict")
            .annotate(n=Sum("count"))
            .values_list("verdict", "n")
        )
        for verdict in Verdict.values:
            actions.add_metric([verdict], by_verdict.get(verdict, 0))
        yield actions

        load = approval_load(top_approvers=TOP_APPROVERS)
        yield GaugeMetricFamily(
            "autonomy_approvals_pending",
            "Approval requests waiting for a decision.",
            value=load.backlog,
        )
        yield from approval_metrics(load)
        yield _by_status("autonomy_agents", "Agents by status.", Agent, AgentStatus.values)
        yield GaugeMetricFamily(
            "autonomy_interventions_open",
            "Emergency stops in force (not lifted).",
            value=Intervention.objects.filter(
                kind=InterventionKind.EMERGENCY_STOP, lifted_at__isnull=True
            ).count(),
        )
        yield _by_status(
            "autonomy_workflow_runs", "Workflow runs by status.", Run, RunStatus.values
        )
        yield from analytics_metrics()


def _by_status(name: str, documentation: str, model, statuses) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    counts = dict(
        model.objects.order_by().values("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    for status in statuses:
        family.add_metric([status], counts.get(status, 0))
    return family


def _allowed(request: HttpRequest) -> bool:
    if settings.DEBUG:
        return True
    token = settings.AUTONOMY_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())
    user = request.user
    return bool(user.is_authenticated and user.is_staff and not hasattr(user, "agent"))


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        response = HttpResponse("metrics need a bearer token or a staff session\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        response["Content-Type"] = "text/plain; charset=utf-8"
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
