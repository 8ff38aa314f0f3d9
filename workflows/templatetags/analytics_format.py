"""How the analytics pages write rates and durations."""

from django import template

from workflows.analytics import duration_label

register = template.Library()


@register.filter
def rate(value) -> str:
    """A share as a percentage; a dash when there is nothing to divide."""
    return "–" if value is None else f"{value:.0%}"


@register.filter
def duration(ms) -> str:
    """A histogram percentile (a bucket's upper bound) or a mean, for people."""
    return duration_label(ms)


@register.filter
def mean_duration(ms) -> str:
    """A mean duration, for people."""
    return duration_label(ms, bound=False)
