import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from rest_framework.test import APIClient

from agents import services as agent_services
from autonomy import actions as lifecycle
from autonomy.models import ActionRequest, ActionStatus, AuditRecord, ConnectorCall
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer, wait_for

ACTIONS = "/api/v1/actions/"
GOOD = {
    "operation": "erp.post-invoice",
    "params": {"invoice_id": "INV-1", "amount": 120},
    "reason": "monthly close",
}


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


def agent_api(token: str) -> APIClient:
    return bearer(APIClient(), token)


def err(response) -> dict:
    assert response["Content-Type"].startswith("application/json")
    return response.json()["error"]


def nothing_written() -> bool:
    return (
        ActionRequest.objects.count() == 0
        and not AuditRecord.objects.filter(kind="action_decision").exists()
    )


@pytest.mark.django_db
def test_agent_asks_and_reads_the_decision_with_reasons(registry):
    response = agent_api(registry.token).post(ACTIONS, GOOD, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["decision"] == "allow" and body["status"] == "approved"
    assert body["reasons"][0]["code"] == "allowed"
    assert body["risk_score"] > 0 and body["risk_factors"]
    assert body["policies"]["permits"][0]["policy"] == "baseline"
    shown = agent_api(registry.token).get(f"{ACTIONS}{body['id']}/")
    assert shown.status_code == 200 and shown.json()["id"] == body["id"]


@pytest.mark.django_db
def test_denied_action_is_recorded_with_its_reason(registry):
    response = agent_api(registry.token).post(
        ACTIONS, {"operation": "erp.read-invoice", "params": {}}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["decision"] == "deny"
    assert [r["code"] for r in response.json()["reasons"]] == ["grant_missing"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, status, code",
    [
        ({**GOOD, "operation": "erp.nothing"}, 400, "operation_unknown"),
        ({**GOOD, "operation": "no-dot"}, 400, "operation_unknown"),
        ({**GOOD, "params": {"invoice_id": "1", "amount": "lots"}}, 400, "params_invalid"),
        ({**GOOD, "params": {"invoice_id": "1"}}, 400, "params_invalid"),
        (
            {**GOOD, "params": {"invoice_id": "1", "amount": 1, "extra": True}},
            400,
            "params_invalid",
        ),
        ({**GOOD, "params": ["not", "an", "object"]}, 400, "params_invalid"),
        ({**GOOD, "colour": "red"}, 400, "unknown_field"),
        ({"params": {}}, 400, "validation_failed"),
    ],
)
def test_bad_input_gets_a_clear_error_and_writes_nothing(registry, body, status, code):
    response = agent_api(registry.token).post(ACTIONS, body, format="json")
    assert response.status_code == status, response.content
    assert err(response)["code"] == code
    assert nothing_written()


@pytest.mark.django_db
def test_params_schema_errors_name_the_field(registry):
    body = {**GOOD, "params": {"invoice_id": "1", "amount": -5}}
    error = err(agent_api(registry.token).post(ACTIONS, body, format="json"))
    assert error["details"]["errors"][0]["path"] == "amount"


@pytest.mark.django_db
def test_oversized_params_are_refused(registry, settings):
    settings.AUTONOMY_MAX_PARAMS_BYTES = 200
    body = {**GOOD, "params": {"invoice_id": "x" * 500, "amount": 1}}
    response = agent_api(registry.token).post(ACTIONS, body, format="json")
    assert response.status_code == 413 and err(response)["code"] == "params_too_large"
    assert nothing_written()


@pytest.mark.django_db
def test_malformed_json_writes_nothing(registry):
    response = agent_api(registry.token).post(
        ACTIONS, data='{"operation": "erp.', content_type="application/json"
    )
    assert response.status_code == 400 and err(response)["code"] == "malformed_json"
    assert nothing_written()


@pytest.mark.django_db
def test_token_without_actions_scope_cannot_ask(registry):
    _, read_only = agent_services.credential_issue(agent=registry.agent, scopes=["agent:read"])
    response = agent_api(read_only).post(ACTIONS, GOOD, format="json")
    assert response.status_code == 403 and err(response)["code"] == "scope_missing"


@pytest.mark.django_db
def test_an_agent_never_sees_another_agents_actions(registry):
    other = build_registry(slug="other-bot")
    created = agent_api(registry.token).post(ACTIONS, GOOD, format="json").json()
    response = agent_api(other.token).get(f"{ACTIONS}{created['id']}/")
    assert response.status_code == 404 and err(response)["code"] == "not_found"
    assert agent_api(other.token).get(ACTIONS).json()["count"] == 0


@pytest.mark.django_db
def test_people_cannot_ask_for_actions(registry, it_admin):
    client = APIClient()
    client.force_authenticate(it_admin)
    response = client.post(ACTIONS, GOOD, format="json")
    assert response.status_code == 403 and err(response)["code"] == "not_an_agent"


@pytest.mark.django_db
def test_same_idempotency_key_returns_the_same_action(registry):
    api = agent_api(registry.token)
    first = api.post(ACTIONS, GOOD, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = api.post(ACTIONS, GOOD, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201 and second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == second.json()["id"]
    assert ActionRequest.objects.count() == 1
    changed = api.post(
        ACTIONS, {**GOOD, "reason": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert changed.status_code == 409 and err(changed)["code"] == "idempotency_key_reused"


@pytest.mark.django_db
def test_simulate_answers_without_recording(registry, it_admin):
    from django.contrib.auth.models import Permission

    it_admin.user_permissions.add(Permission.objects.get(codename="view_policy"))
    client = APIClient()
    client.force_authenticate(it_admin)
    body = {"agent": "ap-bot", "operation": "erp.post-invoice", "params": GOOD["params"],
            "draft_policy": "forbid (principal, action, resource);"}  # fmt: skip
    response = client.post("/api/v1/simulate/", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["verdict"] == "deny" and response.json()["simulated"] is True
    assert nothing_written()
    self_check = agent_api(registry.token).post(
        "/api/v1/simulate/",
        {"operation": "erp.post-invoice", "params": GOOD["params"]},
        format="json",
    )
    assert self_check.json()["verdict"] == "allow"


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_posts_with_one_key_make_one_action_and_one_execution(
    postgres, celery_worker
):
    reg = build_registry()
    results, barrier = [], threading.Barrier(20)

    def post():
        try:
            barrier.wait()
            response = agent_api(reg.token).post(
                ACTIONS, GOOD, format="json", HTTP_IDEMPOTENCY_KEY="same"
            )
            results.append((response.status_code, response.json()["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    assert sorted(code for code, _ in results).count(201) == 1
    assert len({action_id for _, action_id in results}) == 1
    assert ActionRequest.objects.count() == 1
    action_id = results[0][1]
    wait_for(
        lambda: ActionRequest.objects.get(pk=action_id).status == ActionStatus.SUCCEEDED,
        timeout=30,
        what="the worker to execute the action",
    )
    assert ConnectorCall.objects.filter(idempotency_key=action_id).count() == 1
    assert AuditRecord.objects.filter(kind="action_decision").count() == 1
    assert AuditRecord.objects.filter(kind="action_outcome", action_id=action_id).count() == 1
    assert json.loads(json.dumps(ActionRequest.objects.get(pk=action_id).outcome))["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_an_approved_action_whose_publish_was_lost_is_executed_after_the_sweep(
    postgres, celery_worker, monkeypatch
):
    from autonomy import dispatch

    reg = build_registry()
    monkeypatch.setattr(dispatch.publisher, "submit", lambda action_id: None)  # lost publish
    response = agent_api(reg.token).post(ACTIONS, GOOD, format="json")
    assert response.status_code == 201, response.content
    action_id = response.json()["id"]
    assert ActionRequest.objects.get(pk=action_id).status == ActionStatus.APPROVED

    assert lifecycle.actions_redispatch() == 0  # too young: its publish may still arrive
    later = ActionRequest.objects.get(pk=action_id).decided_at + timedelta(minutes=5)
    assert lifecycle.actions_redispatch(now=later) == 1

    wait_for(
        lambda: ActionRequest.objects.get(pk=action_id).status == ActionStatus.SUCCEEDED,
        timeout=30,
        what="the worker to execute the re-dispatched action",
    )
    assert ConnectorCall.objects.filter(idempotency_key=action_id).count() == 1
    assert lifecycle.actions_redispatch(now=later) == 0  # started: never sent again


@pytest.mark.django_db(transaction=True)
def test_an_action_whose_worker_was_killed_mid_execution_runs_once_more_after_the_sweep(
    postgres, tmp_path, settings
):
    """The worker dies after the system did the work and before the action was recorded:
    the broker does not hand its message back (the filesystem one never, Redis after an
    hour). The worker stopped beating, so the sweep sends the action again within seconds,
    long before its 300 s lease, and the connector's idempotency key keeps it to one side
    effect."""
    import os
    import signal
    import time

    from autonomy.models import Connector, WorkerBeat
    from tests.conftest import start_celery_worker, stop_celery_worker

    reg = build_registry()
    Connector.objects.filter(pk=reg.erp.pk).update(config={"latency_ms": 2500})
    beat = {"AUTONOMY_WORKER_BEAT_SECONDS": "0.5", "AUTONOMY_WORKER_LOST_SECONDS": "3"}
    settings.AUTONOMY_WORKER_LOST_SECONDS = 3
    victim = start_celery_worker(tmp_path / "victim.log", env=beat)
    rescuer = None
    try:
        response = agent_api(reg.token).post(ACTIONS, GOOD, format="json")
        assert response.status_code == 201, response.content
        action_id = response.json()["id"]
        wait_for(lambda: ConnectorCall.objects.filter(idempotency_key=action_id).exists(),
                 timeout=30, what=f"the side effect\n{victim.log()}")  # fmt: skip
        os.killpg(victim.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        victim.proc.wait(timeout=10)
        action = ActionRequest.objects.get(pk=action_id)
        assert (action.status, action.attempts) == (ActionStatus.EXECUTING, 1)
        assert action.worker.endswith(f":{victim.proc.pid}")
        last_beat = WorkerBeat.objects.get(pk=action.worker).beat_at

        # This module's clock is set (time_machine); the workers' is not: the sweep is told
        # the time on the workers' clock, and real time passes for the rescuer's.
        assert lifecycle.actions_redispatch(now=last_beat + timedelta(seconds=1)) == 0
        rescuer = start_celery_worker(tmp_path / "rescuer.log", env=beat)
        time.sleep(max(0.0, 3.5 - (time.monotonic() - killed)))  # silent for 3 s and more
        later = last_beat + timedelta(seconds=3.5)  # well within the 300 s lease
        assert lifecycle.actions_redispatch(now=later) == 1
        action = wait_for(
            lambda: ActionRequest.objects.filter(
                pk=action_id, status=ActionStatus.SUCCEEDED
            ).first(),
            timeout=30,
            what=f"the rescuer to execute it\n{rescuer.log()}",
        )
        assert action.attempts == 2 and action.outcome["replayed"] is True
        assert action.worker.endswith(f":{rescuer.proc.pid}")  # the rescuer's name now
        assert ConnectorCall.objects.filter(idempotency_key=action_id).count() == 1
        assert lifecycle.actions_redispatch(now=later) == 0  # finished: never sent again
    finally:
        for worker in (victim, rescuer):
            if worker is not None:
                stop_celery_worker(worker)


def test_a_stalled_action_is_sent_again_once_per_lease_for_each_execution(registry):
    from autonomy import selectors

    action, _ = lifecycle.action_request(
        agent=registry.agent, operation_key="erp.read-invoice", params={}
    )
    started = datetime(2030, 1, 1, tzinfo=UTC)
    ActionRequest.objects.filter(pk=action.pk).update(
        status=ActionStatus.EXECUTING, started_at=started, attempts=1
    )
    lease = timedelta(seconds=60)

    def stalled(**kwargs):  # an action naming no worker: the lease alone
        return selectors.actions_stalled(alive=set(), **kwargs)

    assert stalled(now=started + timedelta(seconds=59), lease=lease) == []
    assert stalled(now=started + timedelta(seconds=61), lease=lease) == [action.pk]
    ActionRequest.objects.filter(pk=action.pk).update(attempts=2)  # executed again since
    assert stalled(now=started + timedelta(seconds=61), lease=lease) == []
    assert stalled(now=started + timedelta(seconds=121), lease=lease) == [action.pk]


@pytest.mark.django_db(transaction=True)
def test_actions_decided_together_go_out_as_one_message_and_each_executes_once(
    postgres, celery_worker, settings, monkeypatch
):
    from autonomy import dispatch, tasks

    settings.AUTONOMY_PUBLISH_LINGER_MS = 1500  # all but the first POST land in one batch
    monkeypatch.setattr(dispatch, "publisher", dispatch.Publisher())
    sent, fan_out = [], tasks.actions_fan_out.apply_async
    monkeypatch.setattr(
        tasks.actions_fan_out,
        "apply_async",
        lambda args, **options: (sent.append(args[0]), fan_out(args, **options)),
    )
    api = agent_api(build_registry().token)
    ids = []
    for n in range(6):
        body = {**GOOD, "params": {"invoice_id": f"INV-{n}", "amount": 10 + n}}
        response = api.post(ACTIONS, body, format="json")
        assert response.status_code == 201 and response.json()["decision"] == "allow"
        ids.append(response.json()["id"])

    wait_for(
        lambda: (
            ActionRequest.objects.filter(pk__in=ids, status=ActionStatus.SUCCEEDED).count()
            == len(ids)
        ),
        timeout=30,
        what="the worker to execute every action of the batch",
    )
    # The first went out at once (nothing was published before it); the rest came while the
    # thread lingered and went out as one fan-out message.
    assert len(sent) == 1 and len(sent[0]) >= 4
    assert [entry[0] for entry in sent[0]] == ids[-len(sent[0]) :]
    for action_id in ids:
        assert ConnectorCall.objects.filter(idempotency_key=action_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_warm_allowed_post_costs_a_constant_number_of_queries(
    django_assert_num_queries, django_capture_on_commit_callbacks, monkeypatch
):
    from autonomy import dispatch

    monkeypatch.setattr(dispatch.publisher, "submit", lambda action_id: None)
    api = agent_api(build_registry().token)
    api.post(ACTIONS, GOOD, format="json")  # warm: policies compiled, operation cached
    body = {**GOOD, "params": {"invoice_id": "INV-2", "amount": 120}}
    # credential, store version, grant and behaviour, action INSERT, audit head UPDATE ...
    # RETURNING, record INSERT, head UPDATE (the publish happens after commit, off-thread);
    # plus the transaction's BEGIN and COMMIT. It was 10 (operation lookup, a second version
    # read, the head locked by SELECT ... FOR UPDATE). Plus one: the dashboard's per-minute
    # rollup upsert (INSERT ... ON CONFLICT DO UPDATE), 9 -> 10. Plus one: the agent's
    # minute counter upsert (``autonomy.usage``), which replaced scanning its actions, 10 -> 11.
    # Minus one: the store version is no longer read first; the gate's one read confirms the
    # version the operation cache holds, 11 -> 10. Plus one on PostgreSQL: the agent's
    # advisory lock that makes its limits hold under concurrency (``usage.hold``; SQLite's
    # IMMEDIATE transaction holds the write lock already), 10 -> 11. Minus two: the audit
    # record is one INSERT that touches no head (the sealer chains it later), 11 -> 9. Plus
    # one: the autonomy settings that apply (``autonomy.levels.level_for``), read fresh so a
    # change holds from the next decision in every process, 9 -> 10. Minus one: settings and
    # rollout plans are read once per policy-store version, which every change moves, 10 -> 9.
    expected = 9 if connection.vendor == "postgresql" else 8
    with django_capture_on_commit_callbacks(), django_assert_num_queries(expected):
        response = api.post(ACTIONS, body, format="json")
    assert response.status_code == 201 and response.json()["decision"] == "allow"


# --- the version a request starts from ------------------------------------------------------
# A request starts from the policy-store version the operation cache holds and the gate's one
# read confirms it; these change the store between two requests of a warm process.


@pytest.mark.django_db(transaction=True)
def test_a_policy_enabled_between_two_requests_decides_the_second():
    from autonomy.policy import services as policy_services

    reg = build_registry()
    api = agent_api(reg.token)
    assert api.post(ACTIONS, GOOD, format="json").json()["decision"] == "allow"  # warm
    policy_services.policy_save(
        name="stop", enabled=True, by=reg.officer, text="forbid (principal, action, resource);"
    )
    body = {**GOOD, "params": {"invoice_id": "INV-2", "amount": 120}}
    second = api.post(ACTIONS, body, format="json").json()
    assert second["decision"] == "deny"
    assert "policy_forbid" in [r["code"] for r in second["reasons"]]


@pytest.mark.django_db(transaction=True)
def test_an_operation_disabled_between_two_requests_is_refused_on_the_second():
    reg = build_registry()
    api = agent_api(reg.token)
    assert api.post(ACTIONS, GOOD, format="json").json()["decision"] == "allow"  # warm
    reg.post.enabled = False
    reg.post.save()  # moves the store version
    body = {**GOOD, "params": {"invoice_id": "INV-2", "amount": 120}}
    second = api.post(ACTIONS, body, format="json").json()
    assert second["decision"] == "deny"
    assert "operation_disabled" in [r["code"] for r in second["reasons"]]


@pytest.mark.django_db(transaction=True)
def test_a_paused_agent_after_a_store_change_is_denied_on_the_current_operation():
    """The denial comes before the gate's read; it still records today's operation."""
    from autonomy.models import Operation

    reg = build_registry()
    api = agent_api(reg.token)
    assert api.post(ACTIONS, GOOD, format="json").json()["decision"] == "allow"  # warm
    reg.post.slug = "post-invoice-v1"
    reg.post.save()  # the key the agent asks for now names another operation
    current = Operation.objects.create(connector=reg.erp, slug="post-invoice", name="Post v2")
    agent_services.agent_pause(agent=reg.agent, by=reg.officer, reason="audit")
    body = {**GOOD, "params": {"invoice_id": "INV-2", "amount": 120}}
    response = api.post(ACTIONS, body, format="json")
    assert response.status_code == 201 and response.json()["decision"] == "deny"
    assert ActionRequest.objects.get(pk=response.json()["id"]).operation_id == current.pk


@pytest.mark.django_db
def test_the_gates_answer_is_the_action_serializers_body_field_by_field(registry):
    """``ActionSerializer.represent`` builds the body directly for speed; the serializer
    stays its definition (and the OpenAPI schema's), so the two must agree exactly."""
    from decimal import Decimal

    from django.utils import timezone

    from autonomy.api.actions import ActionSerializer

    api = agent_api(registry.token)
    ids = [
        api.post(ACTIONS, GOOD, format="json").json()["id"],  # allowed, with an amount
        api.post(ACTIONS, {"operation": "erp.read-invoice"}, format="json").json()["id"],
        api.post(ACTIONS, GOOD, format="json", HTTP_IDEMPOTENCY_KEY="k-1").json()["id"],
    ]
    ActionRequest.objects.filter(pk=ids[0]).update(
        status=ActionStatus.SUCCEEDED,
        started_at=timezone.now(),
        finished_at=timezone.now() + timedelta(microseconds=1),
        attempts=1,
        outcome={"ok": True, "receipt": 7},
        amount=Decimal("1234.5"),
    )
    ActionRequest.objects.filter(pk=ids[2]).update(
        status=ActionStatus.FAILED, error={"message": "ERP down"}, amount=None
    )
    actions = list(ActionRequest.objects.select_related("agent", "operation__connector"))
    assert len(actions) == 3
    for action in actions:
        assert ActionSerializer.represent(action) == ActionSerializer(action).data
    with timezone.override("Europe/Berlin"):  # DRF writes the current time zone
        for action in actions:
            assert ActionSerializer.represent(action) == ActionSerializer(action).data
