"""The page behind an approver's e-mail link: review the request, then approve or reject it.

A GET only shows; the POST decides and spends the link in one transaction, so a decision the
service refuses leaves the link usable and nothing changed.
"""

import json

from django.db import transaction
from django.shortcuts import render
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from approvals import links, selectors, services
from approvals.models import ApprovalKind, ApprovalStatus, Channel, EmailLink, Verdict
from autonomy import masking
from autonomy.errors import DomainError, ErrorCode

VERDICTS = (Verdict.APPROVE, Verdict.REJECT)

# Which page explains a refusal to the person holding the link (the status code is the error's).
LINK_REFUSALS = {
    "expired": "expired", "used": "used", "tampered": "invalid", "unknown": "invalid",
    "stage": "stage_decided",
}  # fmt: skip
DECISION_REFUSALS = {
    ErrorCode.APPROVAL_NOT_PENDING: "settled",
    ErrorCode.ALREADY_DECIDED: "already_decided",
    ErrorCode.NOT_AN_APPROVER: "not_an_approver",
    ErrorCode.NOT_FOUND: "invalid",
}
# Each ending's headline and tone (the portal's flash styles); the template explains it.
OUTCOMES = {
    "approved": ("Approved", "success"),
    "recorded": ("Your approval is recorded", "success"),
    "advanced": ("Approved: on to the next stage", "success"),
    "stage_decided": ("This stage is already decided", "warning"),
    "rejected": ("Rejected", "success"),
    "settled": ("Already decided", "warning"),
    "already_decided": ("You already decided", "warning"),
    "used": ("This link was already used", "warning"),
    "expired": ("This link has expired", "warning"),
    "invalid": ("This link is not valid", "error"),
    "someone_else": ("This link is for someone else", "error"),
    "not_an_approver": ("You are not an approver of this request", "error"),
    "refused": ("Your decision was not recorded", "error"),
}


@require_http_methods(["GET", "POST"])
@csrf_protect
def confirm(request, token: str):
    try:
        link = links.link_open(token)
    except DomainError as exc:
        return _result(request, LINK_REFUSALS.get(exc.details.get("why"), "invalid"), exc)
    if request.user.is_authenticated and request.user.pk != link.approver_id:
        return _result(request, "someone_else", status=403)  # shows nothing of the request
    if request.method == "GET":
        return _review(request, link)

    verdict = request.POST.get("verdict", "")
    if verdict not in VERDICTS:
        return _review(request, link, error="Choose Approve or Reject.", status=400)
    try:
        with transaction.atomic():
            links.link_use(token=token)
            approval = services.approval_decide(
                request_id=link.request_id,
                approver=link.approver,
                verdict=verdict,
                channel=Channel.EMAIL,
                comment=request.POST.get("comment", ""),
            )
    except DomainError as exc:
        return _result(request, DECISION_REFUSALS.get(exc.code, "refused"), exc, link=link)
    outcome = approval.status
    if approval.status == ApprovalStatus.PENDING:
        outcome = "advanced" if approval.stage > link.stage else "recorded"
    return _result(request, outcome, link=link)


def _review(request, link: EmailLink, *, error: str = "", status: int = 200):
    approval = link.request
    if approval.status != ApprovalStatus.PENDING:
        return _result(request, "settled", status=409, link=link)
    if not services.may_decide(user=link.approver, request=approval):
        return _result(request, "not_an_approver", status=403, link=link)
    context = {
        "approval": approval,
        "approver": link.approver,
        "verdicts": {"approve": Verdict.APPROVE, "reject": Verdict.REJECT},
        "comment": request.POST.get("comment", ""),
        "error": error,
        **_work(approval),
    }
    return render(request, "approvals/email_confirm.html", context, status=status)


def _result(
    request,
    outcome: str,
    error: DomainError | None = None,
    *,
    status: int = 200,
    link: EmailLink | None = None,
):
    """One page for every ending: decided, or why nothing happened."""
    approval = selectors.approval_detail(request_id=link.request_id) if link else None
    headline, tone = OUTCOMES[outcome]
    context = {
        "outcome": outcome,
        "headline": headline,
        "tone": tone,
        "approval": approval,
        "approver": link.approver if link else None,
        **(_work(approval) if approval else {}),
        "message": error.message if error else "",
    }
    return render(
        request,
        "approvals/email_result.html",
        context,
        status=error.status_code if error else status,
    )


def _work(approval) -> dict:
    """What the request is about: the agent's action, the plan's promotion, or the registry
    change."""
    if approval.kind == ApprovalKind.PROMOTION:
        return {"promotion": selectors.promotion_summary(promotion=approval.promotion)}
    if approval.kind == ApprovalKind.CHANGE:
        return {"change": selectors.change_summary(change=approval.change)}
    action = approval.action
    # Masked for everyone (``autonomy.masking``): the signed link proves an e-mail was sent
    # to an approver, not who holds it now, so these pages show what the e-mail does.
    return {
        "action": action,
        "params_json": json.dumps(
            masking.params_for(action, viewer=None), indent=2, sort_keys=True, ensure_ascii=False
        ),
    }
