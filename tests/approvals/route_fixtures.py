"""Routes for stage and escalation-rule tests: a payment route in stages, named people."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from approvals.models import ApprovalRequest, ApprovalRoute, RouteStage
from tests.approvals.conftest import approver, pending_action

THRESHOLD = 10_000


def route(name: str, stages: list[dict], **match) -> ApprovalRoute:
    """A route with its stages, numbered in order; each stage's dict holds RouteStage fields
    (``group``: an approver group's name)."""
    made = ApprovalRoute.objects.create(name=name, **match)
    for number, fields in enumerate(stages, start=1):
        fields = dict(fields)
        group = fields.pop("group", None)
        RouteStage.objects.create(
            route=made,
            number=number,
            name=fields.pop("name", f"Stage {number}"),
            approver_group=Group.objects.get_or_create(name=group)[0] if group else None,
            **fields,
        )
    return made


def payments_route(registry, *, stages: int = 2, **stage_two) -> ApprovalRoute:
    """Invoices of at least THRESHOLD: the manager, then finance (then security)."""
    plan = [
        {"name": "Manager", "group": "Managers", "quorum": 1},
        {"name": "Finance", "group": "Finance approvers", "quorum": 1, **stage_two},
        {"name": "Security", "group": "Security", "quorum": 1},
    ][:stages]
    return route("Payments over 10k", plan, operation=registry.post, min_amount=THRESHOLD)


def staged_request(registry, *, amount: int = 20_000) -> ApprovalRequest:
    action = pending_action(registry, amount=amount)
    return ApprovalRequest.objects.get(action=action)


def fresh(user):
    """The user again, without permissions cached on the object."""
    return get_user_model().objects.get(pk=user.pk)


def people():
    """Mia the manager, Fred in finance, Sue in security; Bea in managers and finance."""
    mia = approver("mia", group="Managers")
    fred = approver("fred", group="Finance approvers")
    sue = approver("sue", group="Security")
    bea = approver("bea", group="Managers")
    bea.groups.add(Group.objects.get_or_create(name="Finance approvers")[0])
    return mia, fred, sue, bea
