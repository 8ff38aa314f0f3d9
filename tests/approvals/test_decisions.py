import pytest
from rest_framework.test import APIClient

from approvals import services
from approvals.models import ApprovalRequest, ApprovalStatus, Channel, Decision
from autonomy.errors import DomainError
from autonomy.models import ActionRequest, ActionStatus, AuditRecord
from tests.approvals.conftest import approver, pending_action
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import at_once, bearer


def decide(request, user, verdict="approve", **kwargs):
    return services.approval_decide(
        request_id=request.pk, approver=user, verdict=verdict, channel=Channel.INBOX, **kwargs
    )


@pytest.mark.django_db
def test_a_needs_approval_action_opens_one_request_for_the_units_approvers(waiting):
    registry, action = waiting
    request = ApprovalRequest.objects.get(action=action)
    assert request.status == ApprovalStatus.PENDING
    assert request.approver_group.name == "Portal: Approver"
    assert request.quorum == 1 and request.risk_score == action.risk_score
    assert AuditRecord.objects.filter(kind="approval_opened", action_id=action.pk).count() == 1


@pytest.mark.django_db
def test_approval_moves_the_waiting_action_to_approved_and_audits_it(waiting):
    _, action = waiting
    request = ApprovalRequest.objects.get(action=action)
    decide(request, approver("ann"), comment="fine")
    action.refresh_from_db()
    request.refresh_from_db()
    assert request.status == ApprovalStatus.APPROVED and action.status == ActionStatus.APPROVED
    assert action.reasons[-1]["code"] == "approval_granted"
    record = AuditRecord.objects.get(kind="approval_decision", action_id=action.pk)
    assert record.actor == "ann" and record.payload["channel"] == "inbox"


@pytest.mark.django_db
def test_rejection_denies_the_action(waiting):
    _, action = waiting
    decide(ApprovalRequest.objects.get(action=action), approver("ann"), "reject", comment="no")
    action.refresh_from_db()
    assert action.status == ActionStatus.DENIED
    assert action.reasons[-1]["code"] == "approval_rejected"


@pytest.mark.django_db
def test_someone_outside_the_approver_group_cannot_decide(waiting):
    _, action = waiting
    with pytest.raises(DomainError) as exc:
        decide(ApprovalRequest.objects.get(action=action), approver("eve", group="Strangers"))
    assert exc.value.code == "not_an_approver"


@pytest.mark.django_db
def test_the_agents_owner_cannot_approve_alone(waiting):
    registry, action = waiting
    owner = registry.agent.owner
    owner.groups.add(ApprovalRequest.objects.get(action=action).approver_group)
    request = decide(ApprovalRequest.objects.get(action=action), owner)
    assert request.status == ApprovalStatus.PENDING and request.approvals == 1
    request = decide(request, approver("ann"))
    assert request.status == ApprovalStatus.APPROVED


@pytest.mark.django_db
def test_a_second_approval_by_the_same_person_does_not_count(waiting):
    _, action = waiting
    request = ApprovalRequest.objects.get(action=action)
    request.quorum = 2
    request.save()
    ann = approver("ann")
    decide(request, ann)
    with pytest.raises(DomainError) as exc:
        decide(request, ann)
    assert exc.value.code == "already_decided"
    request.refresh_from_db()
    assert request.approvals == 1 and request.status == ApprovalStatus.PENDING


@pytest.mark.django_db
def test_approve_with_changes_narrows_params_and_rechecks_them(waiting):
    _, action = waiting
    request = ApprovalRequest.objects.get(action=action)
    with pytest.raises(DomainError) as exc:
        decide(
            request,
            approver("ann"),
            "approve_with_changes",
            params={"invoice_id": "INV-1", "amount": "x"},
        )
    assert exc.value.code == "params_invalid"
    decide(
        request,
        approver("bob"),
        "approve_with_changes",
        params={"invoice_id": "INV-1", "amount": 50},
    )
    action.refresh_from_db()
    assert action.params == {"invoice_id": "INV-1", "amount": 50}
    assert action.status == ActionStatus.APPROVED


@pytest.mark.django_db
def test_redirect_hands_the_request_to_another_group(waiting):
    from django.contrib.auth.models import Group

    _, action = waiting
    request = ApprovalRequest.objects.get(action=action)
    controllers = Group.objects.create(name="Controllers")
    decide(request, approver("ann"), "redirect", redirect_to=controllers)
    request.refresh_from_db()
    assert request.approver_group == controllers and request.status == ApprovalStatus.PENDING
    carl = approver("carl", group="Controllers")
    assert services.may_decide(user=carl, request=request)
    assert not services.may_decide(user=approver("dora"), request=request)


@pytest.mark.django_db
def test_approvers_decide_through_the_api_and_agents_never_can(waiting):
    registry, action = waiting
    request = ApprovalRequest.objects.get(action=action)
    agent_api = bearer(APIClient(), registry.token)
    refused = agent_api.post(
        f"/api/v1/approvals/{request.pk}/decide/", {"verdict": "approve"}, format="json"
    )
    assert refused.status_code == 403
    person = APIClient()
    person.force_authenticate(approver("ann"))
    listed = person.get("/api/v1/approvals/").json()
    assert [r["id"] for r in listed["results"]] == [str(request.pk)]
    assert listed["results"][0]["operation"] == "erp.post-invoice"
    decided = person.post(
        f"/api/v1/approvals/{request.pk}/decide/",
        {"verdict": "approve", "comment": "ok"},
        format="json",
    )
    assert decided.status_code == 200 and decided.json()["status"] == "approved"
    again = person.post(
        f"/api/v1/approvals/{request.pk}/decide/", {"verdict": "reject"}, format="json"
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "approval_not_pending"
    assert Decision.objects.get(request=request).channel == "api"


def _race(request_id, users, verdicts):
    def decide(user, verdict):
        return lambda: services.approval_decide(
            request_id=request_id, approver=user, verdict=verdict, channel=Channel.API
        )

    return at_once(*(decide(u, v) for u, v in zip(users, verdicts, strict=True)))


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_decisions_on_one_request_give_exactly_one_outcome(postgres):
    registry = build_registry()
    action = pending_action(registry)
    request = ApprovalRequest.objects.get(action=action)
    users = [approver(f"a{i}") for i in range(50)]
    outcomes = _race(request.pk, users, ["approve" if i % 2 else "reject" for i in range(50)])
    assert outcomes.count("ok") == 1
    assert outcomes.count("approval_not_pending") == 49
    request.refresh_from_db()
    action.refresh_from_db()
    assert Decision.objects.filter(request=request).count() == 1
    expected = {"approved": ActionStatus.APPROVED, "rejected": ActionStatus.DENIED}[request.status]
    assert action.status == expected
    assert AuditRecord.objects.filter(kind="approval_decision", action_id=action.pk).count() == 1


@pytest.mark.django_db(transaction=True)
def test_quorum_of_two_is_counted_right_under_concurrency(postgres):
    registry = build_registry()
    action = pending_action(registry)
    ApprovalRequest.objects.filter(action=action).update(quorum=2)
    request = ApprovalRequest.objects.get(action=action)
    ann, bob = approver("ann"), approver("bob")
    outcomes = _race(request.pk, [ann, ann, ann, bob, bob, bob], ["approve"] * 6)
    request.refresh_from_db()
    assert request.status == ApprovalStatus.APPROVED and request.approvals == 2
    assert outcomes.count("ok") == 2
    assert sorted(set(outcomes) - {"ok"}) == ["already_decided"] or set(outcomes) <= {
        "ok",
        "already_decided",
        "approval_not_pending",
    }
    assert Decision.objects.filter(request=request).count() == 2
    assert ActionRequest.objects.get(pk=action.pk).status == ActionStatus.APPROVED


@pytest.mark.django_db(transaction=True)
def test_an_approved_action_executes_on_the_worker(celery_worker):
    registry = build_registry()
    action = pending_action(registry)
    services.approval_decide(
        request_id=ApprovalRequest.objects.get(action=action).pk, approver=approver("ann"),
        verdict="approve", channel=Channel.API,
    )  # fmt: skip
    from tests.conftest import wait_for

    wait_for(lambda: ActionRequest.objects.get(pk=action.pk).status == ActionStatus.SUCCEEDED,
             timeout=30, what="the approved action to run")  # fmt: skip
