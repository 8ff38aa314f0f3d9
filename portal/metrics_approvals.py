"""The approval load in ``/metrics``: the figures of the dashboard's panel
(``approvals.load``), at scrape time. Labels stay bounded: business units and approver
groups are the organisation's, approvers the busiest ``TOP_APPROVERS``."""

from prometheus_client.core import GaugeMetricFamily

from approvals.load import OUTCOMES, ApprovalLoad

TOP_APPROVERS = 20


def approval_metrics(load: ApprovalLoad):
    """Gauge families of one ``approval_load`` reading."""
    backlog = GaugeMetricFamily(
        "autonomy_approvals_backlog",
        "Approval requests waiting now, by business unit and approver group.",
        labels=["business_unit", "approver_group"],
    )
    arrivals = GaugeMetricFamily(
        "autonomy_approvals_arrivals_1h",
        "Approval requests that arrived in the last hour, by business unit and approver group.",
        labels=["business_unit", "approver_group"],
    )
    for group in load.groups:
        labels = [group["unit_slug"], group["group"]]
        backlog.add_metric(labels, group["backlog"])
        arrivals.add_metric(labels, group["arrivals_1h"])
    yield backlog
    yield arrivals
    closed = GaugeMetricFamily(
        "autonomy_approvals_decided_1h",
        "Approval requests that left the backlog in the last hour, by outcome: approved or "
        "rejected by people, expired undecided, cancelled.",
        labels=["outcome"],
    )
    for outcome in OUTCOMES:
        closed.add_metric([outcome], load.closed_1h[outcome])
    yield closed
    yield GaugeMetricFamily(
        "autonomy_approvals_expired_undecided_24h",
        "Approval requests the clock closed in the last 24 hours because nobody decided.",
        value=load.expired_24h,
    )
    yield GaugeMetricFamily(
        "autonomy_approvals_backlog_growth_per_hour",
        "Net growth of the backlog per hour (arrivals minus closings, the last hour).",
        value=load.rate_per_hour,
    )
    yield GaugeMetricFamily(
        "autonomy_approvals_backlog_forecast_1h",
        "The backlog in an hour at the current net rate.",
        value=load.forecast_1h,
    )
    seconds = GaugeMetricFamily(
        "autonomy_approval_time_to_decision_seconds",
        "Time from arrival to people's decision over the last 24 hours (nearest rank); no "
        "sample while nobody decided.",
        labels=["quantile"],
    )
    for quantile, value in (("0.5", load.median_seconds), ("0.9", load.p90_seconds)):
        if value is not None:
            seconds.add_metric([quantile], value)
    yield seconds
    decisions = GaugeMetricFamily(
        "autonomy_approver_decisions_24h",
        f"Decisions per approver in the last 24 hours (the {TOP_APPROVERS} busiest).",
        labels=["approver"],
    )
    waiting = GaugeMetricFamily(
        "autonomy_approver_pending",
        f"Requests waiting that each approver may decide (the {TOP_APPROVERS} busiest).",
        labels=["approver"],
    )
    for approver in load.approvers:
        decisions.add_metric([approver["username"]], approver["decisions_24h"])
        waiting.add_metric([approver["username"]], approver["pending"])
    yield decisions
    yield waiting
