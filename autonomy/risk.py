"""Risk scoring: a documented, deterministic function from what is asked to a 0-100 score.

Every factor reports its raw value and its contribution, so a person can read why.

| factor              | contribution                                                      |
|---------------------|-------------------------------------------------------------------|
| sensitivity         | (sensitivity - 1) x 8                        (0-32)                |
| data_class          | public 0, internal 5, confidential 12, restricted 20              |
| pii / financial     | +8 / +6                                                           |
| amount              | 5 per decade above 100 (100 → 0, 10,000 → 10, 1,000,000 → 20), ≤20 |
| record_count        | 3 per decade (10 → 3, 1,000 → 9), ≤10                             |
| agent_risk_tier     | (tier - 1) x 5                               (0-15)                |
| recent_rate         | share of the per-minute limit used in the last minute x 10, ≤10   |
| recent_denials      | 2 per denial in the last hour, ≤10                                |
| drift_flags         | 10 per open behaviour flag, ≤20                                   |
| off_hours           | +5 outside 07:00-19:00 UTC on weekdays, and at weekends           |

The sum is capped at 100. The same inputs always give the same score.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

DATA_CLASS_POINTS = {"public": 0, "internal": 5, "confidential": 12, "restricted": 20}
# What the pages that show a score (the inbox, the trace) call each factor it adds.
FACTOR_LABELS = {
    "sensitivity": "Operation sensitivity",
    "data_class": "Data class",
    "pii": "Touches personal data",
    "financial": "Moves or commits money",
    "amount": "Amount",
    "record_count": "Records touched",
    "agent_risk_tier": "Agent risk tier",
    "recent_rate": "Requests in the last minute",
    "recent_denials": "Denials in the last hour",
    "drift_flags": "Open drift flags",
    "off_hours": "Outside office hours",
}


@dataclass(frozen=True)
class Behaviour:
    """What the agent did recently, loaded in one aggregate query by the gate."""

    actions_last_minute: int = 0
    denials_last_hour: int = 0
    spend_today: Decimal = Decimal(0)
    open_flags: tuple[str, ...] = ()


@dataclass
class RiskAssessment:
    score: int
    factors: list[dict] = field(default_factory=list)


def _number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def risk_score(
    *,
    sensitivity: int,
    data_class: str,
    pii: bool,
    financial: bool,
    amount: float | None,
    record_count: float | None,
    risk_tier: int,
    behaviour: Behaviour,
    rate_limit: int,
    at: datetime,
) -> RiskAssessment:
    factors: list[dict] = []

    def add(name: str, value, points: float) -> None:
        factors.append({"factor": name, "value": value, "points": round(points, 1)})

    add("sensitivity", sensitivity, (max(1, min(5, sensitivity)) - 1) * 8)
    add("data_class", data_class, DATA_CLASS_POINTS.get(data_class, 20))
    if pii:
        add("pii", True, 8)
    if financial:
        add("financial", True, 6)
    if amount is not None and amount > 0:
        add("amount", amount, min(20.0, max(0.0, (math.log10(amount) - 2) * 5)))
    if record_count is not None and record_count > 0:
        add("record_count", record_count, min(10.0, max(0.0, math.log10(record_count) * 3)))
    add("agent_risk_tier", risk_tier, (max(1, min(4, risk_tier)) - 1) * 5)
    if behaviour.actions_last_minute and rate_limit:
        share = behaviour.actions_last_minute / rate_limit
        add("recent_rate", behaviour.actions_last_minute, min(10.0, share * 10))
    if behaviour.denials_last_hour:
        add("recent_denials", behaviour.denials_last_hour, min(10, behaviour.denials_last_hour * 2))
    if behaviour.open_flags:
        add("drift_flags", list(behaviour.open_flags), min(20, 10 * len(behaviour.open_flags)))
    if at.weekday() >= 5 or not 7 <= at.hour < 19:
        add("off_hours", at.strftime("%a %H:%M UTC"), 5)
    score = min(100, round(sum(f["points"] for f in factors)))
    return RiskAssessment(score=score, factors=factors)


def param_number(params: dict, name: str) -> float | None:
    """The numeric value of the named parameter (an amount, a record count), if any."""
    return _number(params.get(name)) if name else None
