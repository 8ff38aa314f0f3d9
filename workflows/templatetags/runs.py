"""Template filters of the run pages."""

from datetime import timedelta

from django import template

from workflows import selectors

register = template.Library()


@register.filter
def took(start, end):
    """``{{ run.created_at|took:run.finished_at }}``: ``3 min 20 s``; empty without an end."""
    if start is None or end is None:
        return ""
    return selectors.duration_text(max(end - start, timedelta(0)))


@register.filter
def as_text(value) -> str:
    """A JSON value as a person reads it: strings as they are, the rest as compact JSON."""
    return selectors.as_text(value)
