"""Governance as code: a bundle exported from live governance plans as no change, exports
byte-identically, and applies edits through the owning services, all or nothing."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core.management import call_command
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import Agent, BusinessUnit, RegistryChange
from agents.portal_roles import PortalRole, group_name
from autonomy import grants, level_settings
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import AuditRecord, AutonomySetting, Policy
from governance import bundle, selectors, services
from governance.plans import Op
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer
from tests.factories import UserFactory
from workflows import authoring
from workflows.models import Template, TemplateStatus

pytestmark = pytest.mark.django_db
GOOD = {"operation": "erp.post-invoice", "params": {"invoice_id": "INV-1", "amount": 120}}


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


def person(role: str, username: str):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


@pytest.fixture
def live(db):
    """A registry with something in every section."""
    reg = build_registry()
    admin = person(PortalRole.IT_ADMIN, "ita")
    agent_services.agent_update(agent=reg.agent, by=admin, max_actions_per_minute=30)
    grants.grant(target=reg.read, to=reg.agent, by=admin)
    level_settings.setting_create(
        level="supervised", business_unit=reg.agent.business_unit, operations=[GOOD["operation"]],
        note="pilot", by=admin,
    )  # fmt: skip
    template = authoring.template_from_dict(
        data={
            "key": "pay",
            "name": "Pay",
            "steps": [
                {
                    "key": "post",
                    "name": "Post it",
                    "operation": GOOD["operation"],
                    "assignee_role": "invoice-processor",
                }
            ],
        }  # fmt: skip
    )
    authoring.template_publish(template=template)
    reg.admin = admin
    return reg


def export(tmp_path: Path, name: str = "bundle") -> Path:
    path = tmp_path / name
    call_command("governance", "export", str(path), "--source", "test")
    return path


def plan_exit(path: Path, *extra) -> int:
    with pytest.raises(SystemExit) as exited:
        call_command("governance", "plan", str(path), *extra)
    return exited.value.code


def test_an_exported_bundle_plans_as_no_change_and_has_every_section(live, tmp_path):
    path = export(tmp_path)

    plan = selectors.bundle_plan(files=bundle.read(path))
    assert plan.changes == () and plan.valid and plan.live_digest == plan.bundle_digest
    assert plan_exit(path) == 0
    names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert {"bundle.yaml", "units.yaml", "roles.yaml", "grants.yaml", "policies.yaml",
            "policies/baseline.cedar", "limits.yaml", "autonomy.yaml",
            "workflows/pay.yaml"} <= names  # fmt: skip
    assert "agent:ap-bot:\n  - erp.read-invoice" in (path / "grants.yaml").read_text()
    assert "max_actions_per_minute: 30" in (path / "limits.yaml").read_text()


def test_exporting_twice_gives_byte_identical_files_and_archives(live, tmp_path):
    first = export(tmp_path)
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    export(tmp_path)  # again, into the same directory: the header is kept too
    after = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert after == before

    zip_a, zip_b = tmp_path / "a.zip", tmp_path / "b.zip"
    call_command("governance", "export", str(zip_a), "--source", "test")
    call_command("governance", "export", str(zip_b), "--source", "test")
    files_a = bundle.read(zip_a)
    files_b = bundle.read(zip_b)
    files_a.pop("bundle.yaml"), files_b.pop("bundle.yaml")  # generated_at: its own second
    assert (
        files_a
        == files_b
        == {
            p.relative_to(first).as_posix(): v.decode()
            for p, v in before.items()
            if p.name != "bundle.yaml"
        }
    )


def test_an_edited_policy_plans_as_a_diff_and_the_gate_decides_by_it_once_applied(live, tmp_path):
    agent = bearer(APIClient(), live.token)
    assert agent.post("/api/v1/actions/", GOOD, format="json").json()["decision"] != "deny"
    path = export(tmp_path)
    forbid = 'forbid (principal, action, resource in Connector::"erp");'
    with (path / "policies/baseline.cedar").open("a") as cedar:
        cedar.write(forbid + "\n")

    plan = selectors.bundle_plan(files=bundle.read(path))
    [change] = plan.changes
    assert (change.section, change.op, change.key) == ("policies", Op.CHANGE, "baseline")
    assert f"+{forbid}" in change.lines and "+++ bundle/policies/baseline.cedar" in change.lines
    assert plan_exit(path) == 2

    call_command("governance", "apply", str(path), "--user", "ita", "--yes")

    denied = agent.post("/api/v1/actions/", GOOD, format="json").json()
    assert denied["decision"] == "deny", denied
    assert "policy_forbid" in [r["code"] for r in denied["reasons"]]
    assert Policy.objects.get(name="baseline").version == 2
    record = AuditRecord.objects.get(kind="governance_applied")
    assert record.actor == "ita" and record.payload["counts"] == {
        "add": 0,
        "change": 1,
        "remove": 0,
    }
    assert plan_exit(path) == 0


def test_invalid_cedar_is_reported_by_plan_and_apply_writes_nothing(live, tmp_path):
    path = export(tmp_path)
    (path / "policies/baseline.cedar").write_text("permit (principal, action, resource")
    units = (
        (path / "units.yaml")
        .read_text()
        .replace("approval_threshold: 50", "approval_threshold: 40")
    )
    (path / "units.yaml").write_text(units)

    plan = selectors.bundle_plan(files=bundle.read(path))
    assert not plan.valid
    assert [c.key for c in plan.changes if c.errors] == ["baseline"]
    assert plan_exit(path) == 1
    with pytest.raises(DomainError) as refused:
        services.governance_apply(files=bundle.read(path), by=live.admin)

    assert refused.value.code == ErrorCode.BUNDLE_INVALID
    assert Policy.objects.get(name="baseline").version == 1
    assert BusinessUnit.objects.get(slug="finance").approval_threshold == 50
    assert not AuditRecord.objects.filter(kind="governance_applied").exists()


def test_apply_is_refused_when_live_governance_changed_after_the_plan(live, tmp_path):
    path = export(tmp_path)
    (path / "roles.yaml").write_text(
        (path / "roles.yaml").read_text().replace("description: ''", "description: AP clerks")
    )
    plan = selectors.bundle_plan(files=bundle.read(path))
    assert [c.key for c in plan.changes] == ["invoice-processor"]
    unit = BusinessUnit.objects.get(slug="finance")
    agent_services.business_unit_update(unit=unit, by=live.admin, deny_threshold=90)

    with pytest.raises(DomainError) as refused:
        services.governance_apply(
            files=bundle.read(path), by=live.admin, expect_live=plan.live_digest
        )

    assert refused.value.code == ErrorCode.BUNDLE_LIVE_CHANGED
    assert live.agent.role.description == ""
    assert not AuditRecord.objects.filter(kind="governance_applied").exists()


def test_removals_are_shown_and_made_only_with_prune(live, tmp_path):
    path = export(tmp_path)
    grants_file = path / "grants.yaml"
    grants_file.write_text(
        grants_file.read_text().replace("  agent:ap-bot:\n  - erp.read-invoice\n", "")
    )
    (path / "autonomy.yaml").write_text("autonomy: []\n")

    plan = selectors.bundle_plan(files=bundle.read(path))
    assert sorted((c.section, c.op) for c in plan.changes) == [
        ("autonomy", Op.REMOVE), ("grants", Op.REMOVE)
    ]  # fmt: skip
    services.governance_apply(files=bundle.read(path), by=live.admin)
    assert grants.is_granted(operation=live.read, agent=live.agent)
    assert AutonomySetting.objects.count() == 1

    officer = person(PortalRole.RISK_OFFICER, "rita")
    with pytest.raises(DomainError) as refused:  # risk officers do not grant
        services.governance_apply(files=bundle.read(path), by=officer, prune=True)
    assert refused.value.code == ErrorCode.PERMISSION_DENIED
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    services.governance_apply(files=bundle.read(path), by=admin, prune=True)

    assert not grants.is_granted(operation=live.read, agent=live.agent)
    assert not AutonomySetting.objects.exists()
    assert selectors.bundle_plan(files=bundle.read(path)).changes == ()


def test_added_grants_limits_and_settings_go_through_their_services(live, tmp_path):
    path = export(tmp_path)
    grants_file = path / "grants.yaml"
    role_line = "  role:invoice-processor:\n  - erp.post-invoice\n"
    assert role_line in grants_file.read_text()
    grants_file.write_text(
        grants_file.read_text().replace(role_line, role_line + "  - erp.read-invoice\n")
    )
    (path / "limits.yaml").write_text(
        "limits:\n- agent: ap-bot\n  max_actions_per_minute: 10\n  max_daily_spend: 500\n"
    )

    plan = selectors.bundle_plan(files=bundle.read(path))
    added = [c for c in plan.changes if c.section == "grants"]
    assert [(c.op, c.key) for c in added] == [(Op.ADD, "role:invoice-processor erp.read-invoice")]
    assert "approval" in added[0].note
    services.governance_apply(files=bundle.read(path), by=live.admin)

    # the new grant waits for approval like the portal's; the limits apply at once
    assert not grants.is_granted(operation=live.read, role=live.agent.role)
    waiting = RegistryChange.objects.get(kind="widen_grant", status="pending")
    agent_services.registry_change_settle(change_id=waiting.pk, approved=True, actor="security")
    assert grants.is_granted(operation=live.read, role=live.agent.role)
    agent = Agent.objects.get(pk=live.agent.pk)
    assert (agent.max_actions_per_minute, str(agent.max_daily_spend)) == (10, "500.00")
    assert AuditRecord.objects.filter(kind="grant", payload__granted=True).exists()


def test_unknown_references_are_invalid_in_the_plan(live, tmp_path):
    path = export(tmp_path)
    (path / "grants.yaml").write_text("grants:\n  role:nobody:\n  - erp.nothing\n")
    (path / "autonomy.yaml").write_text("autonomy:\n- level: reckless\n  agent: ghost\n")

    plan = selectors.bundle_plan(files=bundle.read(path))

    errors = {c.section: c.errors for c in plan.changes if c.errors}
    assert set(errors) == {"grants", "autonomy"}
    assert any("role:nobody" in e for e in errors["grants"])
    assert any("ghost" in e for e in errors["autonomy"])


def test_a_workflow_template_round_trips_and_an_edit_publishes_a_new_version(live, tmp_path):
    path = export(tmp_path)
    document = path / "workflows/pay.yaml"
    document.write_text(document.read_text().replace("name: Post it", "name: Post the invoice"))

    [change] = selectors.bundle_plan(files=bundle.read(path)).changes
    assert (change.section, change.op) == ("workflows", Op.CHANGE)
    assert "+  name: Post the invoice" in change.lines
    services.governance_apply(files=bundle.read(path), by=live.admin)  # IT admins author

    latest = authoring.latest_published(key="pay")
    assert latest.version == 2 and latest.steps.get().name == "Post the invoice"
    assert selectors.bundle_plan(files=bundle.read(path)).changes == ()
    export(tmp_path)
    assert "version: 2" in document.read_text()


def test_a_broken_workflow_is_invalid_in_the_plan_and_creates_nothing(live, tmp_path):
    path = export(tmp_path)
    (path / "workflows/new.yaml").write_text(
        "key: new\nname: New\nsteps:\n- key: a\n  operation: erp.nothing\n"
    )

    [change] = selectors.bundle_plan(files=bundle.read(path)).changes

    assert change.op == Op.ADD and change.errors
    assert not Template.objects.filter(key="new").exists()
    assert Template.objects.filter(status=TemplateStatus.PUBLISHED).count() == 1


def test_hostile_bundles_are_refused(live, tmp_path):
    import zipfile

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../escape.yaml", "x: 1")
    with pytest.raises(DomainError) as refused:
        bundle.read(evil)
    assert refused.value.code == ErrorCode.BUNDLE_INVALID

    path = export(tmp_path)
    (path / "units.yaml").write_text("units: &a [*a]\n")
    with pytest.raises(DomainError) as aliases:
        selectors.bundle_plan(files=bundle.read(path))
    assert aliases.value.code == ErrorCode.BUNDLE_INVALID
    (path / "bundle.yaml").write_text("format: 2\n")
    assert plan_exit_error(path)


def plan_exit_error(path: Path) -> bool:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="bundle_invalid"):
        call_command("governance", "plan", str(path))
    return True


def test_yaml_nested_beyond_reason_is_invalid_not_a_crash(live, tmp_path):
    path = export(tmp_path)
    (path / "units.yaml").write_text("units: " + "[" * 50_000 + "]" * 50_000 + "\n")

    with pytest.raises(DomainError) as refused:
        selectors.bundle_plan(files=bundle.read(path))

    assert refused.value.code == ErrorCode.BUNDLE_INVALID


def test_an_agents_owner_may_not_raise_its_limits(live):
    with pytest.raises(DomainError) as refused:
        agent_services.agent_update(agent=live.agent, by=live.officer, max_actions_per_minute=999)

    assert refused.value.code == ErrorCode.FIELDS_NOT_PERMITTED
    assert Agent.objects.get(pk=live.agent.pk).max_actions_per_minute == 30


def test_plan_as_json_names_each_change_and_the_live_digest(live, tmp_path, capsys):
    import json

    path = export(tmp_path)
    (path / "limits.yaml").write_text("limits: []\n")
    capsys.readouterr()

    assert plan_exit(path, "--json") == 2

    plan = json.loads(capsys.readouterr().out)
    assert plan["valid"] and plan["live_digest"].startswith("sha256:")
    assert [(c["section"], c["op"], c["key"]) for c in plan["changes"]] == [
        ("limits", "remove", "ap-bot")
    ]


def test_a_live_unit_missing_from_the_bundle_is_shown_but_never_removed(live, tmp_path, capsys):
    path = export(tmp_path)
    agent_services.business_unit_create(name="Legal", slug="legal", by=live.admin)

    assert plan_exit(path) == 0  # nothing a bundle would apply, even with --prune
    assert "- legal  (not in the bundle; bundles never remove these)" in capsys.readouterr().out
    services.governance_apply(files=bundle.read(path), by=live.admin, prune=True)
    assert BusinessUnit.objects.filter(slug="legal").exists()


def test_a_blueprint_round_trips_and_an_edit_reaches_all_its_agents(live, tmp_path):
    from agents import blueprints
    from agents.models import Blueprint

    blueprint = blueprints.blueprint_create(
        slug="ap-clerk", name="AP clerk", role=live.agent.role, by=live.admin,
        max_actions_per_minute=20, operations=[GOOD["operation"]],
        risk_tier=live.agent.risk_tier,  # adopting never raises a tier
    )  # fmt: skip
    blueprints.blueprint_adopt(
        blueprint=blueprint, agents=Agent.objects.filter(pk=live.agent.pk), by=live.admin
    )
    path = export(tmp_path)
    assert "slug: ap-clerk" in (path / "blueprints.yaml").read_text()
    assert selectors.bundle_plan(files=bundle.read(path)).changes == ()

    text = (path / "blueprints.yaml").read_text()
    assert "max_actions_per_minute: 20" in text
    (path / "blueprints.yaml").write_text(
        text.replace("max_actions_per_minute: 20", "max_actions_per_minute: 7")
    )
    plan = selectors.bundle_plan(files=bundle.read(path))
    assert [(c.section, c.op, c.key) for c in plan.changes] == [
        ("blueprints", Op.CHANGE, "ap-clerk")
    ]
    services.governance_apply(files=bundle.read(path), by=live.admin)

    assert Blueprint.objects.get(slug="ap-clerk").max_actions_per_minute == 7
    assert Agent.objects.get(pk=live.agent.pk).max_actions_per_minute == 7

    (path / "blueprints.yaml").write_text(
        text.replace("role: " + live.agent.role.slug, "role: nobody")
    )
    assert not selectors.bundle_plan(files=bundle.read(path)).valid
