"""The workflow and agent analytics in ``/metrics``: the last 24 hours of the rollups that
``workflows.analytics`` reads for the portal's pages, per template version and step, and per
agent role."""

import math
from datetime import timedelta

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from workflows import analytics
from workflows.services.rollup import AGENT_COUNTERS, RUN_COUNTERS, STEP_COUNTERS

WINDOW = timedelta(hours=24)


def analytics_metrics():
    """Gauge families of the last 24 hours of workflow runs, steps, step times and roles."""
    figures = analytics.fleet_figures(since=analytics.hour_of(timezone.now() - WINDOW))
    runs = GaugeMetricFamily(
        "autonomy_workflow_runs_last_24h",
        "Workflow runs in the last 24 hours by template version and outcome.",
        labels=["template", "version", "outcome"],
    )
    for row in figures["runs"]:
        for name in RUN_COUNTERS:
            runs.add_metric([row["template__key"], str(row["template__version"]), name],
                            row[name] or 0)  # fmt: skip
    yield runs
    steps = GaugeMetricFamily(
        "autonomy_workflow_steps_last_24h",
        "Workflow step runs in the last 24 hours by template version, step and outcome.",
        labels=["template", "version", "step", "outcome"],
    )
    for row in figures["steps"]:
        labels = [row["template__key"], str(row["template__version"]), row["step__key"]]
        for name in STEP_COUNTERS:
            steps.add_metric([*labels, name], row[name] or 0)
    yield steps
    seconds = GaugeMetricFamily(
        "autonomy_workflow_step_seconds_last_24h",
        "Time of finished step runs in the last 24 hours by phase: p50 and p90, each the "
        "upper bound of its histogram bucket.",
        labels=["template", "version", "step", "phase", "quantile"],
    )
    for row in figures["times"]:
        labels = [row["template__key"], str(row["template__version"]), row["step__key"],
                  row["phase"]]  # fmt: skip
        for quantile, label in (("p50", "0.5"), ("p90", "0.9")):
            ms = row[quantile]
            value = math.inf if ms == math.inf else (ms or 0) / 1000
            seconds.add_metric([*labels, label], value)
    yield seconds
    roles = GaugeMetricFamily(
        "autonomy_role_actions_last_24h",
        "Agents' actions that ended in the last 24 hours by role: outcomes, approvals "
        "needed and overrides.",
        labels=["role", "figure"],
    )
    spend = GaugeMetricFamily(
        "autonomy_role_spend_last_24h",
        "Amounts of the succeeded actions of the last 24 hours by role.",
        labels=["role"],
    )
    for row in figures["roles"]:
        role = row["agent__role__slug"] or ""
        for name in AGENT_COUNTERS:
            roles.add_metric([role, name], row[name])
        spend.add_metric([role], float(row["spend"]))
    yield roles
    yield spend
