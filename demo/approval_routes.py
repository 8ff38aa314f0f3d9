"""Demo approval routes (issue 24 items 5 and 6): a payment above 10,000 goes through two
stages, the unit's approvers and then the risk officers; reads of customer data escalate to
the IT admins after half an hour. Deciding both stages takes two people (separation of
duties across stages): ``manage.py demo_admin --username fiona`` makes a second one."""

from decimal import Decimal

from django.contrib.auth.models import Group
from django.db import transaction

from agents.portal_roles import PortalRole, group_name
from approvals.models import ApprovalRoute, EscalationRole, RouteStage
from autonomy.selectors import operation_by_key


def seed() -> dict[str, int]:
    """Idempotent: a route that exists by name is left as it is."""
    made = 0
    with transaction.atomic():
        pay = operation_by_key(key="erp.pay-invoice")
        if pay and not ApprovalRoute.objects.filter(name="Payments over 10k").exists():
            route = ApprovalRoute.objects.create(
                name="Payments over 10k", operation=pay, min_amount=Decimal("10000")
            )
            officers = Group.objects.get_or_create(name=group_name(PortalRole.RISK_OFFICER))[0]
            RouteStage.objects.create(route=route, number=1, name="Manager", quorum=1)
            RouteStage.objects.create(
                route=route, number=2, name="Finance", approver_group=officers, quorum=1,
                escalate_to_role=EscalationRole.IT_ADMIN,
            )  # fmt: skip
            made += 1
        export = operation_by_key(key="crm.export-contacts")
        if export and not ApprovalRoute.objects.filter(name="Customer exports").exists():
            route = ApprovalRoute.objects.create(name="Customer exports", operation=export)
            RouteStage.objects.create(
                route=route, number=1, name="Approval", escalate_after_seconds=30 * 60,
                remind_after_seconds=10 * 60, escalate_to_role=EscalationRole.IT_ADMIN,
            )  # fmt: skip
            made += 1
    return {"approval_routes": made}
