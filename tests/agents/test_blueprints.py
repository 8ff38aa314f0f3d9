"""Blueprints stamp and change many agents together; a role's permission model is cloned to
another business unit after a diff that writes nothing."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import blueprints
from agents.models import Agent, BusinessUnit, Role
from autonomy import gate, grants
from autonomy.errors import DomainError
from autonomy.models import AuditRecord, AutonomySetting, Connector, Operation, Policy
from autonomy.policy import services as policy_services
from tests.conftest import assert_envelope
from tests.factories import BusinessUnitFactory, UserFactory, make_role

pytestmark = pytest.mark.django_db
OFFICE_HOURS = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
BASELINE = 'permit (principal, action == Action::"invoke", resource);'
HR_POLICY = (
    'forbid (principal in Role::"hr-assistant", action, resource)\n'
    'when { resource.sensitivity > 3 }\nunless { principal in BusinessUnit::"hr" };'
)


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(OFFICE_HOURS, tick=True):
        yield


@pytest.fixture
def ops(db):
    erp = Connector.objects.create(slug="erp", name="ERP", kind="erp")
    hris = Connector.objects.create(slug="hris", name="HRIS", kind="http")
    made = {
        "post": Operation.objects.create(connector=erp, slug="post-invoice", name="Post"),
        "read": Operation.objects.create(connector=erp, slug="read-invoice", name="Read"),
        "employee": Operation.objects.create(connector=hris, slug="read-employee", name="Emp"),
        "hris": hris,
    }
    policy_services.registry_changed()
    admin = UserFactory(username="baseline-author")
    policy_services.policy_save(name="baseline", text=BASELINE, enabled=True, by=admin)
    return made


@pytest.fixture
def clerk_blueprint(ops, it_admin):
    return blueprints.blueprint_create(
        slug="invoice-clerk",
        name="Invoice clerk",
        role=make_role("invoice-clerk"),
        risk_tier="low",
        max_actions_per_minute=30,
        operations=["erp.post-invoice"],
        by=it_admin,
    )


def approve_waiting() -> int:
    """People approve every registry change still waiting (registrations, widened grants):
    what the unit owner and security would do in the inbox."""
    from agents import services
    from agents.models import RegistryChange

    waiting = list(RegistryChange.objects.filter(status="pending").values_list("pk", flat=True))
    for change_id in waiting:
        services.registry_change_settle(change_id=change_id, approved=True, actor="security")
    return len(waiting)


def stamp(blueprint, count, by, unit=None):
    return blueprints.blueprint_stamp(
        blueprint=blueprint,
        count=count,
        business_unit=unit or BusinessUnitFactory(slug="finance", name="Finance"),
        owner=UserFactory(username="owner"),
        by=by,
    )


def test_stamping_registers_n_agents_with_the_blueprints_tier_limits_and_version(
    clerk_blueprint, it_admin
):
    agents = stamp(clerk_blueprint, 3, it_admin)
    assert [a.name for a in agents] == ["Invoice clerk 1", "Invoice clerk 2", "Invoice clerk 3"]
    for agent in agents:
        assert agent.role.slug == "invoice-clerk" and agent.risk_tier == 1
        assert agent.max_actions_per_minute == 30
        assert (agent.blueprint_id, agent.blueprint_version) == (clerk_blueprint.pk, 1)
        assert agent.service_user.groups.filter(pk=clerk_blueprint.role.group_id).exists()
    record = AuditRecord.objects.filter(kind="blueprint_stamped").get()
    assert record.payload["count"] == 3
    # numbered after the ones it has
    assert stamp(clerk_blueprint, 1, it_admin)[0].name == "Invoice clerk 4"


def test_updating_a_blueprint_changes_all_its_agents_at_the_next_decision(
    clerk_blueprint, it_admin, ops
):
    agents = stamp(clerk_blueprint, 4, it_admin)
    assert approve_waiting() == 5  # the four registrations and the blueprint's role grant
    other = Agent.objects.exclude(blueprint=clerk_blueprint)
    assert not other.exists()
    first = Agent.objects.get(pk=agents[0].pk)
    assert gate.decide(agent=first, operation=ops["read"], params={}).verdict == "deny"

    updated = blueprints.blueprint_update(
        blueprint=clerk_blueprint, by=it_admin, max_actions_per_minute=5,
        max_daily_spend="2500.00", autonomy_level="supervised",
        operations=["erp.read-invoice"],
    )  # fmt: skip

    assert updated.version == 2
    rows = list(Agent.objects.filter(blueprint=clerk_blueprint).values_list(
        "max_actions_per_minute", "max_daily_spend", "risk_tier", "blueprint_version"
    ))  # fmt: skip
    assert rows == [(5, Decimal("2500.00"), 1, 2)] * 4
    first = Agent.objects.get(pk=agents[0].pk)
    waiting = gate.decide(agent=first, operation=ops["read"], params={})
    assert "grant_missing" in {r["code"] for r in waiting.reasons}  # the new grant waits
    assert approve_waiting() == 1
    read = gate.decide(agent=first, operation=ops["read"], params={})
    assert read.verdict != "deny", read.reasons
    assert read.level.level == "supervised"
    assert gate.decide(agent=first, operation=ops["post"], params={}).verdict == "deny"
    record = AuditRecord.objects.filter(kind="blueprint_updated").get()
    assert record.payload["agents"] == 4 and record.payload["version"] == 2
    assert AutonomySetting.objects.filter(role=clerk_blueprint.role).count() == 1


def test_an_unchanged_update_bumps_nothing(clerk_blueprint, it_admin):
    same = blueprints.blueprint_update(blueprint=clerk_blueprint, by=it_admin, risk_tier=1)
    assert same.version == 1
    assert not AuditRecord.objects.filter(kind="blueprint_updated").exists()


def _update_queries(blueprint, by, n: int) -> int:
    stamp(blueprint, n, by, unit=BusinessUnitFactory(slug=f"unit-{n}", name=f"Unit {n}"))
    with CaptureQueriesContext(connection) as queries:
        blueprints.blueprint_update(
            blueprint=blueprint, by=by, max_actions_per_minute=blueprint.version + 7
        )
    return len(queries)


def test_update_query_count_does_not_grow_with_the_number_of_agents(clerk_blueprint, it_admin):
    few = _update_queries(clerk_blueprint, it_admin, 5)
    many = _update_queries(Blueprint_refresh(clerk_blueprint), it_admin, 45)  # 50 agents now
    assert Agent.objects.filter(blueprint=clerk_blueprint).count() == 50
    assert many == few


def Blueprint_refresh(blueprint):
    blueprint.refresh_from_db()
    return blueprint


def test_blueprint_policies_put_in_the_role_and_are_validated(clerk_blueprint, it_admin):
    blueprints.blueprint_update(
        blueprint=clerk_blueprint, by=it_admin,
        policies=['forbid (principal in {{role}}, action, resource) when { resource.sensitivity > 4 };'],
    )  # fmt: skip
    saved = Policy.objects.get(name="Blueprint invoice-clerk #1")
    assert 'Role::"invoice-clerk"' in saved.text and saved.enabled
    with pytest.raises(DomainError) as refused:
        blueprints.blueprint_update(
            blueprint=clerk_blueprint, by=it_admin, policies=["permit (principal, nonsense"]
        )
    assert refused.value.code == "validation_failed"
    clerk_blueprint.refresh_from_db()
    assert clerk_blueprint.version == 2  # the invalid change rolled back whole
    blueprints.blueprint_update(blueprint=clerk_blueprint, by=it_admin, policies=[])
    assert not Policy.objects.filter(name__startswith="Blueprint invoice-clerk").exists()


def test_bad_blueprint_input_is_refused(clerk_blueprint, it_admin):
    for bad in (
        {"operations": ["erp.no-such"]},
        {"risk_tier": "extreme"},
        {"max_daily_spend": "-1"},
        {"max_daily_spend": "NaN"},
        {"max_actions_per_minute": "many"},
        {"autonomy_level": "wild"},
    ):
        with pytest.raises(DomainError) as refused:
            blueprints.blueprint_update(blueprint=clerk_blueprint, by=it_admin, **bad)
        assert refused.value.code == "validation_failed", bad
    with pytest.raises(DomainError) as refused:
        blueprints.blueprint_update(blueprint=clerk_blueprint, by=it_admin, role="x")
    assert refused.value.code == "unknown_field"


def test_export_and_upsert_round_trip(clerk_blueprint, it_admin):
    exported = blueprints.blueprints_export()
    assert exported == [
        {
            "slug": "invoice-clerk", "name": "Invoice clerk", "description": "",
            "role": "invoice-clerk", "risk_tier": "low", "autonomy_level": "",
            "max_actions_per_minute": 30, "max_daily_spend": None,
            "operations": ["erp.post-invoice"], "policies": [],
        }
    ]  # fmt: skip
    changed = {**exported[0], "max_daily_spend": "10.50"}
    assert blueprints.blueprint_upsert(changed, it_admin).version == 2
    assert blueprints.blueprints_export()[0]["max_daily_spend"] == "10.50"
    new = {**exported[0], "slug": "second-clerk"}
    assert blueprints.blueprint_upsert(new, it_admin).role.slug == "invoice-clerk"
    with pytest.raises(DomainError):
        blueprints.blueprint_upsert({**exported[0], "role": "someone-else"}, it_admin)


# --- cloning a permission model -------------------------------------------------------------


@pytest.fixture
def hr_model(ops, it_admin):
    hr = BusinessUnitFactory(slug="hr", name="HR", approval_threshold=40, deny_threshold=80)
    legal = BusinessUnitFactory(slug="legal", name="Legal")
    role = make_role("hr-assistant")
    grants.grant(target=ops["employee"], to=role)
    grants.grant(target=ops["hris"], to=role)
    policy_services.policy_save(name="HR sensitive", text=HR_POLICY, enabled=True, by=it_admin)
    return role, hr, legal


def _plan(hr_model):
    role, hr, legal = hr_model
    return blueprints.permission_model_plan(
        role=role, from_unit=hr, to_unit=legal, new_role_slug="legal-assistant"
    )


def test_clone_plan_shows_the_diff_and_writes_nothing(hr_model):
    policies, audits = Policy.objects.count(), AuditRecord.objects.count()
    plan = _plan(hr_model)
    assert {g["target"] for g in plan["grants"]} == {"hris.read-employee", "hris.*"}
    [policy] = plan["policies"]
    assert policy["change"] == "add" and policy["errors"] == []
    assert 'Role::"legal-assistant"' in policy["text"]
    assert 'BusinessUnit::"legal"' in policy["text"] and '"hr"' not in policy["text"]
    assert {t["field"]: (t["before"], t["after"]) for t in plan["thresholds"]} == {
        "approval_threshold": (50, 40),
        "deny_threshold": (85, 80),
    }
    assert (Policy.objects.count(), AuditRecord.objects.count()) == (policies, audits)
    assert not Role.objects.filter(slug="legal-assistant").exists()


def test_clone_apply_lets_the_new_role_act_in_the_target_unit(hr_model, it_admin, ops):
    plan = _plan(hr_model)
    role, hr, legal = hr_model
    blueprints.permission_model_clone(
        role=role, from_unit=hr, to_unit=legal, new_role_slug="legal-assistant",
        plan_hash=plan["hash"], by=it_admin,
    )  # fmt: skip
    new_role = Role.objects.get(slug="legal-assistant")
    assert not grants.is_granted(operation=ops["employee"], role=new_role)  # waits for people
    assert approve_waiting() >= 1
    from tests.factories import make_agent

    agent = make_agent(slug="legal-bot", business_unit=legal, role=new_role)
    decision = gate.decide(agent=agent, operation=ops["employee"], params={})
    assert decision.verdict == "allow", decision.reasons
    legal.refresh_from_db()
    assert (legal.approval_threshold, legal.deny_threshold) == (40, 80)
    assert Policy.objects.filter(name="HR sensitive (legal-assistant in legal)").exists()
    record = AuditRecord.objects.filter(kind="permission_model_cloned").get()
    assert record.payload["hash"] == plan["hash"]
    # a second preview has nothing left to add
    again = _plan(hr_model)
    assert again["grants"] == [] and again["policies"] == [] and again["thresholds"] == []


def test_a_stale_plan_is_refused(hr_model, it_admin, ops):
    plan = _plan(hr_model)
    role, hr, legal = hr_model
    grants.grant(target=ops["read"], to=role)  # the source moved since the preview
    with pytest.raises(DomainError) as refused:
        blueprints.permission_model_clone(
            role=role, from_unit=hr, to_unit=legal, new_role_slug="legal-assistant",
            plan_hash=plan["hash"], by=it_admin,
        )  # fmt: skip
    assert refused.value.code == "conflict"
    assert not Role.objects.filter(slug="legal-assistant").exists()


def _api_data(hr_model, **extra):
    role, hr, legal = hr_model
    return {
        "role": role.slug, "from_unit": hr.slug, "to_unit": legal.slug,
        "new_role": "legal-assistant", **extra,
    }  # fmt: skip


# --- the page ---------------------------------------------------------------------------------


def _page_data(hr_model, **extra):
    role, hr, legal = hr_model
    return {
        "role": role.pk, "from_unit": hr.pk, "to_unit": legal.pk,
        "new_role": "legal-assistant", **extra,
    }  # fmt: skip


def test_the_clone_page_shows_the_diff_and_saves_with_the_hash(client, hr_model, it_admin):
    client.force_login(it_admin)
    page = client.get("/permission-models/clone/", _page_data(hr_model))
    assert page.status_code == 200
    body = page.content.decode()
    assert "hris.read-employee" in body and "legal-assistant" in body
    plan_hash = page.context["plan"]["hash"]
    saved = client.post("/permission-models/clone/", _page_data(hr_model, plan_hash=plan_hash))
    assert saved.status_code == 302
    assert Role.objects.filter(slug="legal-assistant").exists()


def test_the_clone_page_refuses_a_stale_hash(client, hr_model, it_admin):
    client.force_login(it_admin)
    answer = client.post("/permission-models/clone/", _page_data(hr_model, plan_hash="0" * 64))
    assert answer.status_code == 409
    assert not Role.objects.filter(slug="legal-assistant").exists()


def test_a_viewer_is_refused_the_clone_page_and_api(client, api, hr_model, viewer):
    client.force_login(viewer)
    assert client.get("/permission-models/clone/").status_code == 403
    assert client.post("/permission-models/clone/", _page_data(hr_model)).status_code == 403
    api.force_authenticate(viewer)
    answer = api.post("/api/v1/permission-models/plan/", _api_data(hr_model), format="json")
    assert_envelope(answer, 403, "permission_denied")
    assert not Role.objects.filter(slug="legal-assistant").exists()


def test_the_api_plans_and_clones(api, hr_model, it_admin):
    api.force_authenticate(it_admin)
    plan = api.post("/api/v1/permission-models/plan/", _api_data(hr_model), format="json")
    assert plan.status_code == 200, plan.content
    data = _api_data(hr_model, plan_hash=plan.json()["hash"])
    done = api.post("/api/v1/permission-models/clone/", data, format="json")
    assert done.status_code == 200, done.content
    assert Role.objects.filter(slug="legal-assistant").exists()


def test_an_invalid_policy_rewrite_is_refused_with_the_validation_envelope(api, hr_model, it_admin):
    role, hr, legal = hr_model
    # Valid once; the registry moved under it (saved past the service on purpose).
    Policy.objects.create(
        name="HR stale", enabled=True,
        text='permit (principal in Role::"hr-assistant", action, resource) '
        "when { resource.no_such_attribute };",
    )  # fmt: skip
    api.force_authenticate(it_admin)
    plan = api.post("/api/v1/permission-models/plan/", _api_data(hr_model), format="json")
    stale = [p for p in plan.json()["policies"] if p["source"] == "HR stale"]
    assert stale and stale[0]["errors"]
    data = _api_data(hr_model, plan_hash=plan.json()["hash"])
    answer = api.post("/api/v1/permission-models/clone/", data, format="json")
    assert_envelope(answer, 400, "validation_failed")
    assert not Role.objects.filter(slug="legal-assistant").exists()


def test_other_roles_policies_are_not_part_of_the_model(hr_model, it_admin):
    policy_services.policy_save(
        name="Someone else's", enabled=True, by=it_admin,
        text='forbid (principal in Role::"hr-assistant-2", action, resource) when { false };',
    )  # fmt: skip
    assert [p["source"] for p in _plan(hr_model)["policies"]] == ["HR sensitive"]


def test_a_bad_new_role_slug_is_refused(hr_model):
    role, hr, legal = hr_model
    with pytest.raises(DomainError) as refused:
        blueprints.permission_model_plan(
            role=role, from_unit=hr, to_unit=legal, new_role_slug='x" || true'
        )
    assert refused.value.code == "validation_failed"


def test_admin_lists_blueprints_and_stamps_agents(client, clerk_blueprint, it_admin):
    BusinessUnitFactory(slug="finance", name="Finance")
    client.force_login(it_admin)
    assert client.get("/admin/agents/blueprint/").status_code == 200
    url = f"/admin/agents/blueprint/{clerk_blueprint.pk}/stamp/"
    assert client.get(url).status_code == 200
    unit = BusinessUnit.objects.get(slug="finance")
    answer = client.post(url, {"count": 2, "business_unit": unit.pk, "owner": it_admin.pk})
    assert answer.status_code == 302, answer.content[:2000]
    assert Agent.objects.filter(blueprint=clerk_blueprint).count() == 2


def test_admin_stamp_is_refused_to_a_viewer(client, clerk_blueprint, viewer):
    client.force_login(viewer)
    url = f"/admin/agents/blueprint/{clerk_blueprint.pk}/stamp/"
    assert client.get(url).status_code in (302, 403)
    assert client.post(url, {"count": 2}).status_code in (302, 403)
    assert not Agent.objects.filter(blueprint=clerk_blueprint).exists()


def test_it_admin_group_holds_the_blueprint_permissions(it_admin):
    group = Group.objects.get(name="Portal: IT admin")
    assert group.permissions.filter(codename="change_blueprint").exists()


def test_admin_add_form_shows_a_refused_value_on_its_field_and_saves_a_good_one(
    client, ops, it_admin
):
    role = make_role("invoice-clerk")
    client.force_login(it_admin)
    form = {
        "slug": "clerk", "name": "Clerk", "role": role.pk, "risk_tier": 2,
        "autonomy_level": "guarded", "max_actions_per_minute": "", "max_daily_spend": "",
        "operations": '["erp.no-such"]', "policies": "[]", "description": "",
    }  # fmt: skip
    refused = client.post("/admin/agents/blueprint/add/", form)
    assert refused.status_code == 200
    assert "unknown: erp.no-such" in refused.content.decode()
    assert not blueprints.Blueprint.objects.exists()
    saved = client.post(
        "/admin/agents/blueprint/add/", {**form, "operations": '["erp.read-invoice"]'}
    )
    assert saved.status_code == 302, saved.content[:3000]
    blueprint = blueprints.Blueprint.objects.get(slug="clerk")
    assert not grants.is_granted(operation=ops["read"], role=role)  # the grant waits
    assert approve_waiting() == 1
    assert grants.is_granted(operation=ops["read"], role=role)
    assert AutonomySetting.objects.get(pk=blueprint.autonomy_setting_id).level == "guarded"


def test_the_clone_page_refuses_unknown_ids_and_writes_nothing(client, hr_model, it_admin):
    client.force_login(it_admin)
    policies = Policy.objects.count()
    answer = client.post("/permission-models/clone/", _page_data(hr_model, to_unit=999999))
    assert answer.status_code == 400
    assert (Policy.objects.count(), Role.objects.filter(slug="legal-assistant").exists()) == (
        policies,
        False,
    )


def test_a_viewer_reads_a_blueprint_in_the_admin_without_the_stamp_button(
    client, clerk_blueprint, viewer
):
    client.force_login(viewer)
    page = client.get(f"/admin/agents/blueprint/{clerk_blueprint.pk}/change/")
    assert page.status_code == 200
    assert "/stamp/" not in page.content.decode()


def test_a_blueprint_never_raises_its_agents_tier_which_waits_for_people(clerk_blueprint, it_admin):
    stamp(clerk_blueprint, 2, it_admin)
    approve_waiting()
    with pytest.raises(DomainError) as refused:
        blueprints.blueprint_update(blueprint=clerk_blueprint, by=it_admin, risk_tier=3)
    assert (
        refused.value.code == "validation_failed" and "risk_tier" in refused.value.details["fields"]
    )
    assert set(Agent.objects.values_list("risk_tier", flat=True)) == {1}
    # adopting agents whose tier is lower than the blueprint's would raise them too
    higher = blueprints.blueprint_create(
        slug="senior-clerk", name="Senior clerk", role=clerk_blueprint.role, by=it_admin,
        risk_tier="high",
    )  # fmt: skip
    with pytest.raises(DomainError):
        blueprints.blueprint_adopt(blueprint=higher, agents=Agent.objects.all(), by=it_admin)
    assert set(Agent.objects.values_list("risk_tier", flat=True)) == {1}
