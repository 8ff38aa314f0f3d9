"""Policy history: every change records an immutable version, decisions name the versions
that made them, a rollback goes through the same validation and decides the next request,
and the pages show the versions, their diffs and the button to the right people only."""

import html

import pytest
from django.contrib import admin

from autonomy import actions as lifecycle
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import (
    AuditRecord,
    Policy,
    PolicyChange,
    PolicySetVersion,
    PolicyVersion,
    PolicyVersionImmutable,
)
from autonomy.policy import selectors, services
from tests.autonomy.gate_fixtures import BASELINE, build_registry
from tests.autonomy.rollout_fixtures import officer, person
from tests.conftest import at_once
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

FORBID_BIG = (
    'forbid (principal, action, resource == Operation::"erp.post-invoice") '
    "when { context has amount && context.amount > 100 };"
)


@pytest.fixture
def registry():
    return build_registry()


def post(registry, amount: int = 500, n: int = 1):
    action, _ = lifecycle.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": f"inv-{amount}-{n}", "amount": amount},
    )
    return action


def outdated_policy(registry) -> Policy:
    """A policy whose version 1 reads a string parameter the registry has since made a
    number: valid when saved, refused by today's validation."""
    read = registry.read
    read.params_schema = {"type": "object", "properties": {"ticket": {"type": "string"}}}
    read.save()
    policy = services.policy_save(
        name="reads",
        text='permit (principal, action, resource == Operation::"erp.read-invoice") '
        'when { context.params has ticket && context.params.ticket == "x" };',
        enabled=True,
        by=registry.officer,
    )
    services.policy_save(
        policy=policy, name="reads", text=BASELINE, enabled=True, by=registry.officer
    )
    read.params_schema = {"type": "object", "properties": {"ticket": {"type": "integer"}}}
    read.save()  # the registry moves on
    return policy


def decision_payload(action) -> dict:
    record = AuditRecord.objects.get(action_id=action.pk, kind="action_decision")
    return record.payload["decision"]["policies"]


# --- decisions name versions ---------------------------------------------------------------


def test_a_decision_names_the_policy_versions_that_permitted_or_forbade_it(registry):
    baseline = Policy.objects.get(name="baseline")
    allowed = post(registry, 50)
    assert allowed.verdict == "allow"
    assert allowed.policy_ids["permits"] == [
        {"policy_id": baseline.pk, "policy": "baseline", "version": 1, "statement": 0}
    ]
    assert decision_payload(allowed)["permits"][0]["version"] == 1

    services.policy_save(
        policy=baseline,
        name="baseline",
        text=BASELINE,
        description="now with a reason",
        enabled=True,
        by=registry.officer,
    )  # a description change is a version too: decisions name v2 from now on
    forbid = services.policy_save(
        name="no big invoices", text=FORBID_BIG, enabled=True, by=registry.officer
    )
    denied = post(registry, 500)
    assert denied.verdict == "deny"
    assert denied.policy_ids["forbids"] == [
        {"policy_id": forbid.pk, "policy": "no big invoices", "version": 1, "statement": 0}
    ]
    assert decision_payload(denied)["forbids"][0]["version"] == 1
    permitted = post(registry, 60)
    assert permitted.policy_ids["permits"][0]["version"] == 2
    # Each named (policy, version) is exactly one recorded version, with the text that decided.
    for ref in (denied.policy_ids["forbids"][0], permitted.policy_ids["permits"][0]):
        version = selectors.policy_version(ref["policy_id"], ref["version"])
        assert version.text == Policy.objects.get(pk=ref["policy_id"]).text


def test_rolling_back_restores_the_earlier_behaviour_on_the_next_request(registry):
    baseline = Policy.objects.get(name="baseline")
    assert post(registry, 500, 1).verdict == "allow"
    services.policy_save(
        policy=baseline,
        name="baseline",
        text=BASELINE + "\n" + FORBID_BIG,
        enabled=True,
        by=registry.officer,
    )
    refused = post(registry, 500, 2)
    assert refused.verdict == "deny"
    assert refused.policy_ids["forbids"][0]["version"] == 2

    restored = services.policy_rollback(policy=baseline, to_version=1, by=registry.officer)

    assert restored.version == 3 and restored.text == BASELINE
    again = post(registry, 500, 3)
    assert again.verdict == "allow"
    assert again.policy_ids["permits"][0]["version"] == 3
    latest = selectors.policy_versions(baseline).first()
    assert (latest.number, latest.change, latest.source_number) == (3, "rolled_back", 1)
    assert latest.content_hash == selectors.policy_version(baseline.pk, 1).content_hash
    assert latest.author == registry.officer


def test_a_rollback_to_a_text_todays_registry_refuses_is_refused_and_records_nothing(registry):
    policy = outdated_policy(registry)

    with pytest.raises(DomainError) as refused:
        services.policy_rollback(policy=policy, to_version=1, by=registry.officer)

    assert refused.value.code == ErrorCode.VALIDATION_FAILED
    assert refused.value.details["fields"]["text"]
    policy.refresh_from_db()
    assert (policy.version, policy.text) == (2, BASELINE)
    assert selectors.policy_versions(policy).count() == 2


def test_a_rollback_to_a_version_the_policy_never_had_is_not_found(registry):
    baseline = Policy.objects.get(name="baseline")
    other = services.policy_save(name="other", text=BASELINE, enabled=False, by=registry.officer)
    services.policy_set_enabled(policy=other, enabled=True, by=registry.officer)
    with pytest.raises(DomainError) as refused:
        services.policy_rollback(policy=baseline, to_version=2, by=registry.officer)
    assert refused.value.code == ErrorCode.POLICY_VERSION_UNKNOWN
    assert refused.value.status_code == 404


# --- what is recorded ----------------------------------------------------------------------


def test_every_change_records_the_next_version_and_the_set_in_force(registry):
    baseline = Policy.objects.get(name="baseline")
    sets_before = PolicySetVersion.objects.count()
    p = services.policy_save(name="p", text=FORBID_BIG, enabled=False, by=registry.officer)
    services.policy_set_enabled(policy=p, enabled=True, by=registry.officer)
    services.policy_set_enabled(policy=p, enabled=True, by=registry.officer)  # no change
    services.policy_set_enabled(policy=p, enabled=False, by=registry.officer)
    key = p.pk
    services.policy_delete(policy=p, by=registry.officer)

    versions = list(selectors.policy_versions(key))
    assert [(v.number, v.change, v.enabled) for v in versions] == [
        (4, "deleted", False),
        (3, "disabled", False),
        (2, "enabled", True),
        (1, "created", False),
    ]
    assert all(v.policy_id is None and v.policy_name == "p" for v in versions)
    sets = list(PolicySetVersion.objects.order_by("number"))[sets_before:]
    assert [s.policies for s in sets] == [
        {str(baseline.pk): 1},
        {str(baseline.pk): 1, str(key): 2},
        {str(baseline.pk): 1},
        {str(baseline.pk): 1},
    ]
    assert [s.number for s in sets] == sorted({s.number for s in sets})
    kinds = AuditRecord.objects.filter(kind="policy_version").values_list("payload", flat=True)
    assert [(r["policy_id"], r["version"], r["change"]) for r in kinds][-4:] == [
        (key, 1, "created"),
        (key, 2, "enabled"),
        (key, 3, "disabled"),
        (key, 4, "deleted"),
    ]


def test_a_caller_names_the_change_it_makes_and_an_unknown_kind_is_refused(registry):
    baseline = Policy.objects.get(name="baseline")
    services.policy_save(
        policy=baseline, name="baseline", text=FORBID_BIG, enabled=True, by=registry.officer,
        change=PolicyChange.PROMOTED, note="trial 7 promoted",
    )  # fmt: skip
    latest = selectors.policy_version(baseline.pk, 2)
    assert (latest.change, latest.note) == ("promoted", "trial 7 promoted")
    with pytest.raises(ValueError):
        services.policy_save(
            policy=baseline, name="baseline", text=BASELINE, enabled=True, change="rewritten"
        )
    assert Policy.objects.get(pk=baseline.pk).version == 2


def test_policies_in_force_answers_for_a_past_moment(registry):
    baseline = Policy.objects.get(name="baseline")
    first = PolicySetVersion.objects.order_by("-number").first()
    p = services.policy_save(name="p", text=FORBID_BIG, enabled=True, by=registry.officer)

    now = [(v.policy_key, v.number) for v in selectors.policies_in_force()]
    then = [(v.policy_key, v.number) for v in selectors.policies_in_force(at=first.created_at)]

    assert now == [(baseline.pk, 1), (p.pk, 1)]
    assert then == [(baseline.pk, 1)]


def test_recorded_versions_are_never_changed_or_deleted(registry):
    version = PolicyVersion.objects.get(policy_name="baseline")
    version.text = "forbid (principal, action, resource);"
    with pytest.raises(PolicyVersionImmutable):
        version.save()
    with pytest.raises(PolicyVersionImmutable):
        version.delete()
    with pytest.raises(PolicyVersionImmutable):
        PolicyVersion.objects.all().delete()
    policy_set = PolicySetVersion.objects.first()
    with pytest.raises(PolicyVersionImmutable):
        policy_set.save()
    with pytest.raises(PolicyVersionImmutable):
        PolicySetVersion.objects.all().delete()
    assert PolicyVersion.objects.get(pk=version.pk).text == BASELINE


def test_the_admin_lets_nobody_add_change_or_delete_a_version(registry, rf):
    request = rf.get("/")
    request.user = UserFactory(username="root", is_staff=True, is_superuser=True)
    for model in (PolicyVersion, PolicySetVersion):
        model_admin = admin.site._registry[model]
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request)


# --- pages ---------------------------------------------------------------------------------


def test_the_version_page_shows_an_escaped_diff_from_its_predecessor(registry, client):
    baseline = Policy.objects.get(name="baseline")
    services.policy_save(
        policy=baseline,
        name="baseline",
        text="// <script>alert(1)</script>\n" + FORBID_BIG,
        description="<b>why</b>",
        enabled=True,
        by=registry.officer,
    )
    client.force_login(officer())

    page = client.get(f"/policies/{baseline.pk}/versions/2/").content.decode()

    assert "<script>alert(1)</script>" not in page and "<b>why</b>" not in page
    assert '<span class="diff-add">+ // &lt;script&gt;alert(1)&lt;/script&gt;</span>' in page
    assert f'<span class="diff-remove">- {html.escape(BASELINE)}</span>' in page
    assert "&lt;b&gt;why&lt;/b&gt;" in page
    assert 'id="rollback"' not in page  # v2 is in force: nothing to roll back to
    assert 'id="rollback"' in client.get(f"/policies/{baseline.pk}/versions/1/").content.decode()


def test_a_viewer_reads_the_history_but_cannot_roll_back(registry, client, viewer):
    baseline = Policy.objects.get(name="baseline")
    services.policy_save(
        policy=baseline, name="baseline", text=FORBID_BIG, enabled=True, by=registry.officer
    )
    client.force_login(viewer)

    history = client.get(f"/policies/{baseline.pk}/").content.decode()
    assert 'data-version="2"' in history and 'data-version="1"' in history
    assert (
        'id="rollback"' not in client.get(f"/policies/{baseline.pk}/versions/1/").content.decode()
    )
    refused = client.post(f"/policies/{baseline.pk}/versions/1/rollback/")

    assert refused.status_code == 403
    baseline.refresh_from_db()
    assert (baseline.version, baseline.text) == (2, FORBID_BIG)


def test_a_person_without_a_portal_role_reads_no_history(registry, client):
    baseline = Policy.objects.get(name="baseline")
    client.force_login(person("nobody", None))
    assert client.get(f"/policies/{baseline.pk}/").status_code == 403
    assert client.get(f"/policies/{baseline.pk}/versions/1/").status_code == 403
    assert client.get("/policies/").status_code == 403


def test_the_rollback_button_rolls_back_and_shows_the_new_version(registry, client):
    baseline = Policy.objects.get(name="baseline")
    services.policy_save(
        policy=baseline, name="baseline", text=FORBID_BIG, enabled=True, by=registry.officer
    )
    client.force_login(officer())

    response = client.post(
        f"/policies/{baseline.pk}/versions/1/rollback/", {"note": "the forbid was too wide"}
    )

    assert response.status_code == 302
    assert response["Location"] == f"/policies/{baseline.pk}/versions/3/"
    latest = selectors.policy_version(baseline.pk, 3)
    assert (latest.change, latest.source_number, latest.note) == (
        PolicyChange.ROLLED_BACK,
        1,
        "the forbid was too wide",
    )
    assert latest.author_name == "risk-officer"


def test_a_refused_rollback_shows_why_and_changes_nothing(registry, client):
    policy = outdated_policy(registry)
    client.force_login(officer())

    response = client.post(f"/policies/{policy.pk}/versions/1/rollback/", follow=True)

    assert "not valid Cedar for this registry" in response.content.decode()
    assert selectors.policy_versions(policy).count() == 2


def test_a_deleted_policys_history_stays_readable(registry, client, viewer):
    p = services.policy_save(name="gone", text=FORBID_BIG, enabled=True, by=registry.officer)
    key = p.pk
    services.policy_delete(policy=p, by=registry.officer)
    client.force_login(viewer)

    assert "gone" in client.get("/policies/").content.decode()
    page = client.get(f"/policies/{key}/versions/2/").content.decode()
    assert "policy deleted" in page
    assert client.get(f"/policies/{key}/versions/9/").status_code == 404


def test_the_history_page_costs_the_same_queries_for_many_versions(
    registry, client, viewer, django_assert_max_num_queries
):
    baseline = Policy.objects.get(name="baseline")
    client.force_login(viewer)
    client.get(f"/policies/{baseline.pk}/")  # warm the session and permission caches
    for n in range(30):
        services.policy_save(
            policy=baseline, name="baseline", text=BASELINE, description=str(n), enabled=True,
            by=registry.officer,
        )  # fmt: skip
    with django_assert_max_num_queries(12):
        assert client.get(f"/policies/{baseline.pk}/").status_code == 200


def test_the_trace_links_each_deciding_policy_to_its_version_and_old_decisions_still_render(
    registry, client
):
    baseline = Policy.objects.get(name="baseline")
    action = post(registry, 50)
    old = post(registry, 60)
    type(old).objects.filter(pk=old.pk).update(
        policy_ids={"permits": [{"policy_id": baseline.pk, "policy": "baseline", "statement": 0}]}
    )
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    linked = client.get(f"/actions/{action.pk}/trace/").content.decode()
    plain = client.get(f"/actions/{old.pk}/trace/")

    assert f'href="/policies/{baseline.pk}/versions/1/"' in linked
    assert plain.status_code == 200
    assert "<strong>baseline</strong>" in plain.content.decode()
    assert (
        "/policies/" not in plain.content.decode().split('id="trace-policies"')[1].split("</ul>")[0]
    )


def test_history_begins_with_one_version_per_existing_policy():
    from importlib import import_module

    from django.apps import apps

    backfill = import_module("autonomy.migrations.0017_policy_history_backfill").backfill
    on, off = Policy.objects.bulk_create(
        [
            Policy(name="on", text=BASELINE, enabled=True, version=4),
            Policy(name="off", text=FORBID_BIG, enabled=False, version=2),
        ]
    )

    backfill(apps, None)

    assert [(v.policy_key, v.number, v.text) for v in PolicyVersion.objects.order_by("pk")] == [
        (on.pk, 4, BASELINE),
        (off.pk, 2, FORBID_BIG),
    ]
    assert PolicySetVersion.objects.get().policies == {str(on.pk): 4}


def test_people_who_read_policies_read_their_history_in_the_admin_and_change_none(
    registry, client, viewer
):
    version = PolicyVersion.objects.get(policy_name="baseline")
    client.force_login(viewer)

    assert client.get("/admin/autonomy/policyversion/").status_code == 200
    url = f"/admin/autonomy/policyversion/{version.pk}/change/"
    assert client.get(url).status_code == 200
    assert client.post(url, {"note": "rewritten"}).status_code == 403
    client.force_login(officer())
    assert client.post(url, {"note": "rewritten"}).status_code == 403
    assert PolicyVersion.objects.get(pk=version.pk).note == version.note


@pytest.mark.django_db(transaction=True)
def test_concurrent_changes_each_get_their_own_version_and_the_last_set_sees_them_all(postgres):
    registry = build_registry()
    baseline = Policy.objects.get(name="baseline")
    others = [
        services.policy_save(name=f"p{i}", text=FORBID_BIG, enabled=False, by=registry.officer)
        for i in range(4)
    ]

    def enable(policy):
        return lambda: services.policy_set_enabled(
            policy=Policy.objects.get(pk=policy.pk), enabled=True, by=registry.officer
        )

    def describe(n):
        return lambda: services.policy_save(
            policy=Policy.objects.get(pk=baseline.pk), name="baseline", text=BASELINE,
            description=f"edit {n}", enabled=True, by=registry.officer,
        )  # fmt: skip

    outcomes = at_once(*(enable(p) for p in others), describe(1), describe(2))

    assert outcomes == ["ok"] * 6
    assert sorted(selectors.policy_versions(baseline).values_list("number", flat=True)) == [
        1,
        2,
        3,
    ]
    numbers = list(PolicySetVersion.objects.order_by("number").values_list("number", flat=True))
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    in_force = {
        str(pk): n for pk, n in Policy.objects.filter(enabled=True).values_list("pk", "version")
    }
    assert selectors.policy_set_at().policies == in_force
    assert {(v.policy_key, v.number) for v in selectors.policies_in_force()} == {
        (int(pk), n) for pk, n in in_force.items()
    }
