"""``{% content_matches action as content %}``: an action's content-rule matches, for the
inbox and the trace. Each content parameter a rule matched is returned with its stored text
and the matches marked (``<mark>``), from the offsets the gate recorded in the reasons
(``autonomy.content.rules``); redacted spans show as their placeholder, never the original,
because the original was never stored."""

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from autonomy import masking
from autonomy.content.rules import CONTENT_CODES
from autonomy.models import ContentEffect

register = template.Library()


def _at(params, path: str):
    found = params
    for part in path.split("."):
        if isinstance(found, dict):
            found = found.get(part)
        elif isinstance(found, list) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        else:
            return None
    return found


def _marked(text: str, spans: list[tuple[int, int, str, str]]):
    out, at = [], 0
    for start, end, effect, rule in sorted(spans):
        if start < at or end > len(text) or start >= end:
            continue
        out.append(escape(text[at:start]))
        out.append(
            format_html(
                '<mark class="content-match content-{}" title="{}">{}</mark>',
                effect,
                rule,
                text[start:end],
            )
        )
        at = end
    out.append(escape(text[at:]))
    return mark_safe("".join(out))  # noqa: S308  (every piece escaped above)


@register.simple_tag
def content_matches(action, viewer=None) -> dict:
    """``{"reasons": [...], "texts": [{"param", "html"}], "asks": bool, "blocks": bool}``,
    as ``viewer`` may see them (``autonomy.masking``): a declared sensitive parameter shows
    its mask, and so do the matches quoted from it."""
    visible = masking.reasons_for(action, viewer=viewer)
    reasons = [r for r in visible if r.get("code") in CONTENT_CODES]
    spans: dict[str, list] = {}
    for reason in reasons:
        details = reason.get("details") or {}
        param = details.get("param")
        if not param:
            continue
        for match in details.get("matches") or []:
            spans.setdefault(param, []).append(
                (match.get("start", 0), match.get("end", 0), details.get("effect", ""),
                 details.get("rule", ""))
            )  # fmt: skip
    texts = []
    for param, found in spans.items():
        cls = masking.declared_class(action.operation, param)
        if cls is not None and not masking.may_view_sensitive(viewer, action=action):
            texts.append({"param": param, "html": masking.masked(cls)})
            continue
        text = _at(action.params or {}, param)
        if isinstance(text, str):
            texts.append({"param": param, "html": _marked(text, found)})
    effects = {(r.get("details") or {}).get("effect") for r in reasons}
    return {
        "reasons": reasons,
        "texts": texts,
        "asks": ContentEffect.NEEDS_APPROVAL in effects,
        "blocks": ContentEffect.BLOCK in effects,
    }
