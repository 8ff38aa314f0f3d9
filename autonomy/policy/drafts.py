"""Drafts of policy changes written by the product, not by hand (approvals' suggestions).

A policy's ``@approval("required")`` permit sends what it matches to a person; a second,
plain permit beside it changes nothing (``engine``: any determining statement that asks for
approval asks). So sparing one pattern the wait means rewriting that policy: each statement
that asks for approval gains ``unless { <pattern> }``, and a plain copy of it applies
``when { <pattern> }``. Outside the pattern the policy decides exactly as before; inside it
the same requests are permitted without asking.
"""

import copy
import json

import cedarpy

from autonomy.policy.engine import APPROVAL_ANNOTATION


def pattern_condition(
    *, role: str, unit: str, operation: str, max_risk: int, max_amount: int | None = None
) -> str:
    """Cedar for "this role in this unit invoking this operation, at or below these bounds"."""
    parts = [
        f"principal in Role::{json.dumps(role)}",
        f"principal in BusinessUnit::{json.dumps(unit)}",
        f"resource == Operation::{json.dumps(operation)}",
        f"context.risk_score <= {int(max_risk)}",
    ]
    if max_amount is not None:
        parts.append(f"context has amount && context.amount <= {int(max_amount)}")
    return " && ".join(parts)


def asks_for_approval(text: str) -> bool:
    """Whether any statement of ``text`` sends what it permits to a person."""
    return any(_asks(est) for est in _statements(text))


def approval_exempted(*, texts: list[str], condition: str) -> str:
    """One policy text replacing ``texts``: the same statements, except that those asking for
    approval no longer ask where ``condition`` holds (see the module docstring)."""
    body = _statements(f"permit (principal, action, resource) when {{ {condition} }};")[0][
        "conditions"
    ][0]["body"]
    out = []
    for text in texts:
        for est in _statements(text):
            if not _asks(est):
                out.append(est)
                continue
            asking = copy.deepcopy(est)
            asking.setdefault("conditions", []).append({"kind": "unless", "body": body})
            plain = copy.deepcopy(est)
            plain["annotations"] = {
                k: v for k, v in (est.get("annotations") or {}).items() if k != APPROVAL_ANNOTATION
            }
            plain.setdefault("conditions", []).append({"kind": "when", "body": body})
            out += [asking, plain]
    document = {
        "staticPolicies": {f"policy{n}": est for n, est in enumerate(out)},
        "templates": {},
        "templateLinks": [],
    }
    return cedarpy.policies_from_json_str(json.dumps(document))


def _statements(text: str) -> list[dict]:
    statics = json.loads(cedarpy.policies_to_json_str(text)).get("staticPolicies") or {}
    return [statics[k] for k in sorted(statics, key=lambda k: int("0" + k.removeprefix("policy")))]


def _asks(est: dict) -> bool:
    return (
        est.get("effect") == "permit"
        and (est.get("annotations") or {}).get(APPROVAL_ANNOTATION) == "required"
    )
