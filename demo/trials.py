"""The demo's log-only trial: tighter money limits run beside the live policies on the fleet's
traffic, so the trial's page fills within a minute of ``make run`` and the desk's risk
officer can read the difference and promote it."""

from django.contrib.auth import get_user_model

from autonomy.models import PolicyTrial
from autonomy.policy import trials

TRIAL_NAME = "Tighter money limits"
# Routine invoice postings run 120 to 4,000 EUR and purchase orders 200 to 6,000 (demo.fleet):
# a fair share of both would be denied, and every large amount that now waits for a person.
STRICTER = """// Invoice postings above 3,000 and purchase orders above 5,000 are refused outright.
forbid (principal, action, resource == Operation::"erp.post-invoice")
when { context has amount && context.amount > 3000 };
forbid (principal, action, resource == Operation::"erp.create-purchase-order")
when { context has amount && context.amount > 5000 };
"""


def seed_trials() -> int:
    """Start the trial as the desk's risk officer, once (skipped once it exists, or without
    the officer or the operations it names)."""
    if PolicyTrial.objects.filter(name=TRIAL_NAME).exists():
        return 0
    officer = get_user_model().objects.filter(username="rita.risk").first()
    if officer is None:
        return 0
    trials.trial_start(name=TRIAL_NAME, text=STRICTER, by=officer)
    return 1
