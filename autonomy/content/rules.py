"""Content rules as an input of the gate's decision (``gate.decide``).

``rule_set(version)`` is the enabled ``ContentRule`` rows for one policy-store version, read
in one query when the version moves and kept per process until it moves again: every save
or delete of a rule moves it (``autonomy.policy.receivers``), so the cache says what
invalidates it and a decision costs no query for its rules. ``scan`` reads the operation's
declared content parameters (every string nested in them) and recipient parameters, and
returns what matched, one reason per rule and parameter, plus the parameters to store and
send when a ``redact`` rule, or a ``block`` rule on sensitive data (a card number, a
secret), matched text: those spans are replaced, so the original never reaches the
database, the audit trail or the connector.

Positions in a reason (``matches[].start/end``) are offsets in the stored text, so the inbox
can highlight them (``autonomy.templatetags.content_marks``).
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from autonomy.content import detectors
from autonomy.errors import ErrorCode
from autonomy.models import ContentEffect, ContentRule, Detector
from autonomy.policy.versioned import PerVersion

EXCERPT_CONTEXT = 24
MAX_MATCHES_PER_REASON = 50
REASON_CODES = {
    ContentEffect.BLOCK: ErrorCode.CONTENT_BLOCKED,
    ContentEffect.NEEDS_APPROVAL: ErrorCode.CONTENT_NEEDS_APPROVAL,
    ContentEffect.REDACT: ErrorCode.CONTENT_REDACTED,
    ContentEffect.LOG: ErrorCode.CONTENT_LOGGED,
}
CONTENT_CODES = {str(code) for code in REASON_CODES.values()}
TEXT_DETECTORS = set(detectors.FINDERS)


@dataclass(frozen=True)
class Rule:
    pk: int
    name: str
    detector: str
    effect: str
    options: dict
    operation_id: int | None
    connector_id: int | None
    business_unit_id: int | None
    role_id: int | None
    finder_key: str  # rules with equal detector and options share one search per text

    def applies(self, *, agent, operation) -> bool:
        return (
            self.operation_id in (None, operation.pk)
            and self.connector_id in (None, operation.connector_id)
            and self.business_unit_id in (None, agent.business_unit_id)
            and self.role_id in (None, agent.role_id)
        )


def _strings(value) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if isinstance(v, str | int) and str(v).strip()]


def _rule(row: dict) -> Rule:
    """A row as the scan uses it. Options are checked in the admin form; a row written
    around it must still never break decisions: unknown national-id schemes are dropped
    (none left: the defaults), non-lists read as empty."""
    options = dict(row["options"]) if isinstance(row["options"], dict) else {}
    if row["detector"] == Detector.NATIONAL_ID:
        options["schemes"] = [s for s in _strings(options.get("schemes"))
                              if s in detectors.NATIONAL_IDS]  # fmt: skip
    if not isinstance(options.get("region", ""), str):
        options["region"] = ""
    for key in ("terms", "domains"):
        if key in options:
            options[key] = _strings(options[key])
    if row["detector"] == Detector.FORBIDDEN_TERMS:
        terms = options.get("terms") or []
        options["_pattern"] = detectors.terms_pattern(terms)
        options["_lower_terms"] = [t.strip().lower() for t in terms]
    key = json.dumps([row["detector"], row["options"]], sort_keys=True, default=str)
    return Rule(
        pk=row["pk"], name=row["name"], detector=row["detector"], effect=row["effect"],
        options=options, operation_id=row["operation_id"], connector_id=row["connector_id"],
        business_unit_id=row["business_unit_id"], role_id=row["role_id"], finder_key=key,
    )  # fmt: skip


class RuleSet:
    """The enabled rules of one policy-store version, built in one query."""

    def __init__(self, version: int):
        self.version = version
        rows = ContentRule.objects.filter(enabled=True).order_by("pk").values(
            "pk", "name", "detector", "effect", "options",
            "operation_id", "connector_id", "business_unit_id", "role_id",
        )  # fmt: skip
        self.rules = tuple(_rule(row) for row in rows)

    def applying(self, *, agent, operation) -> list[Rule]:
        return [r for r in self.rules if r.applies(agent=agent, operation=operation)]


_rules = PerVersion(RuleSet)
# The rules for a version (the policy-store version this decision read), shared per process.
rule_set = _rules.get
rules_forget = _rules.forget


# --- scanning -------------------------------------------------------------------------------


@dataclass
class Hit:
    rule: Rule
    param: str
    start: int = 0
    end: int = 0
    label: str = ""
    shown: str = ""  # the match as reasons show it (masked where sensitive)


@dataclass
class Scan:
    hits: list[Hit] = field(default_factory=list)
    params: dict | None = None  # what to store and send, when a rule replaced text
    excerpts: dict = field(default_factory=dict)  # id(hit) -> masked excerpt

    def reasons(self, *effects: str) -> list[dict]:
        """One reason per rule and parameter, for the hits of ``effects``."""
        grouped: dict[tuple, list[Hit]] = {}
        for hit in self.hits:
            if hit.rule.effect in effects:
                grouped.setdefault((hit.rule.pk, hit.param), []).append(hit)
        return [_reason(hits, self.excerpts) for hits in grouped.values()]

    def has(self, effect: str) -> bool:
        return any(hit.rule.effect == effect for hit in self.hits)


def _reason(hits: list[Hit], excerpts: dict) -> dict:
    first, rule = hits[0], hits[0].rule
    where = f"in {first.param}" if first.param else "in the content"
    labels = sorted({h.label for h in hits})
    message = (
        f"Content rule {rule.name!r} ({Detector(rule.detector).label.lower()}) found "
        f"{', '.join(labels)} {where}"
        + (f" ({len(hits)} matches)" if len(hits) > 1 else "")
        + f": {ContentEffect(rule.effect).label.split(' (')[0].lower()}."
    )
    details = {
        "rule": rule.name,
        "rule_id": rule.pk,
        "detector": rule.detector,
        "effect": rule.effect,
        "param": first.param,
        "excerpt": excerpts.get(id(first), first.shown),
        "matches": [
            {"start": h.start, "end": h.end, "match": h.shown}
            for h in hits[:MAX_MATCHES_PER_REASON]
        ],
    }
    if len(hits) > MAX_MATCHES_PER_REASON:
        details["more"] = len(hits) - MAX_MATCHES_PER_REASON
    return {"code": str(REASON_CODES[rule.effect]), "message": message, "details": details}


def _leaves(value, path: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}.{index}")


def _replace_leaves(value, path: str, texts: dict[str, str]):
    if isinstance(value, str):
        return texts.get(path, value)
    if isinstance(value, dict):
        return {k: _replace_leaves(v, f"{path}.{k}", texts) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_leaves(v, f"{path}.{i}", texts) for i, v in enumerate(value)]
    return value


def rewrite(text: str, replacements: list[tuple[int, int, str]]):
    """``text`` with non-overlapping ``(start, end, new)`` spans replaced, and a function
    that maps an offset of ``text`` to the rewritten one (an offset inside a replaced span
    maps to that span's start, an end inside it to the replacement's end)."""
    out, kept, shift, at = [], [], 0, 0
    for start, end, new in sorted(replacements):
        if start < at:
            continue  # overlaps one already replaced
        out += [text[at:start], new]
        kept.append((start, end, start + shift, start + shift + len(new)))
        shift += len(new) - (end - start)
        at = end
    out.append(text[at:])

    def moved(offset: int, is_end: bool = False) -> int:
        delta = 0
        for start, end, new_start, new_end in kept:
            if offset <= start:
                break
            if offset < end:
                return new_end if is_end else new_start
            delta = new_end - end
        return offset + delta

    return "".join(out), moved


def _replaces(rule: Rule) -> bool:
    """Redacted text is replaced, and so is sensitive text in a blocked request (it is
    never sent, so the original need not be kept either); a blocked term stays as written."""
    return rule.effect == ContentEffect.REDACT or (
        rule.effect == ContentEffect.BLOCK and rule.detector in detectors.SENSITIVE
    )


def _scan_text(rules: list[Rule], param: str, text: str, found_cache: dict) -> tuple[list, str]:
    """The hits of ``rules`` in one text leaf, and the text to store (replaced spans)."""
    hits: list[Hit] = []
    leaf = detectors.Text(text)
    for rule in rules:
        key = (rule.finder_key, param)
        if key not in found_cache:
            found_cache[key] = detectors.find(rule.detector, leaf, rule.options)
        for span in found_cache[key]:
            raw = text[span.start : span.end]
            hits.append(
                Hit(rule, param, span.start, span.end, span.label,
                    detectors.mask(rule.detector, raw))
            )  # fmt: skip
    replaced = [(h.start, h.end, f"[redacted: {h.label}]") for h in hits if _replaces(h.rule)]
    if not replaced:
        return hits, text
    stored, moved = rewrite(text, replaced)
    for hit in hits:
        hit.start, hit.end = moved(hit.start), moved(hit.end, is_end=True)
    return hits, stored


def _excerpts(hits: list[Hit], stored: str, excerpts: dict) -> None:
    """Around each hit, the stored text with every sensitive match masked."""
    masks = [
        (h.start, h.end, h.shown)
        for h in hits
        if h.rule.detector in detectors.SENSITIVE and not _replaces(h.rule)
    ]
    shown, moved = rewrite(stored, masks)
    for hit in hits:
        start, end = moved(hit.start), moved(hit.end, is_end=True)
        left = max(0, start - EXCERPT_CONTEXT)
        right = min(len(shown), end + EXCERPT_CONTEXT)
        excerpts[id(hit)] = (
            ("…" if left else "") + shown[left:right] + ("…" if right < len(shown) else "")
        )


def scan(*, rules: list[Rule], operation, params: dict) -> Scan:
    """Run ``rules`` over ``operation``'s declared content and recipient parameters."""
    result = Scan()
    if not rules:
        return result
    text_rules = [r for r in rules if r.detector in TEXT_DETECTORS]
    stored_texts: dict[str, str] = {}
    texts: list[str] = []
    found_cache: dict = {}
    for name in operation.content_params or []:
        if name not in params:
            continue
        for path, text in _leaves(params[name], name):
            texts.append(text)
            hits, stored = _scan_text(text_rules, path, text, found_cache)
            if stored != text:
                stored_texts[path] = stored
            _excerpts(hits, stored, result.excerpts)
            result.hits += hits
    for rule in rules:
        if rule.detector == Detector.REQUIRED_TERMS and operation.content_params:
            for term in detectors.missing_terms(texts, rule.options.get("terms") or []):
                result.hits.append(Hit(rule, "", label=f"no {term!r}", shown=term))
        elif rule.detector == Detector.RECIPIENT_DOMAINS:
            for name in operation.recipient_params or []:
                values = [text for _, text in _leaves(params.get(name), name)]
                outside = detectors.recipients_outside(values, rule.options.get("domains") or [])
                for address in outside:
                    result.hits.append(
                        Hit(rule, name, label="a recipient outside the allowed domains",
                            shown=address)
                    )  # fmt: skip
    if stored_texts:
        result.params = {
            name: _replace_leaves(value, name, stored_texts) for name, value in params.items()
        }
    return result
