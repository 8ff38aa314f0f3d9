"""``autonomy.rows``' shortcuts past Django's layers give what Django's own way gives: field
values prepared for a statement (``value_of``/``prepare_value``) and objects built from rows
(``FastLoad.from_db``)."""

import datetime
import uuid
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.db import connection, models
from django.db.models.signals import post_init
from django.utils import timezone

from agents.models import Agent, AgentStatus, BusinessUnit
from autonomy import rows
from autonomy.models import ActionRequest
from tests.factories import make_agent
from tests.workflows.fixtures import build_world, published, step
from workflows.models import Run, StepRun
from workflows.services import run_start, step_execute

SAMPLES = [
    "text",
    "",
    0,
    7,
    -3,
    2**40,
    True,
    False,
    None,
    uuid.uuid4(),
    timezone.now(),
    timezone.now().replace(microsecond=0),
    datetime.datetime(2026, 3, 1, 12, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    {"a": [1, 2.5, "x"], "b": None},
    [1, "two"],
    AgentStatus.ACTIVE,  # a str subclass: Django's way
    1.5,
]


def project_fields():
    for model in apps.get_models():
        if model.__module__.split(".")[0] in ("agents", "autonomy", "workflows", "approvals"):
            for field in model._meta.concrete_fields:
                yield model, field


def django_way(field, value):
    try:
        return ("ok", field.get_db_prep_save(value, connection))
    except Exception as exc:  # noqa: BLE001 (compared: the shortcut must raise the same)
        return ("raised", type(exc))


def shortcut(how, value):
    try:
        return ("ok", rows.prepare_value(how, value, connection))
    except Exception as exc:  # noqa: BLE001
        return ("raised", type(exc))


@pytest.mark.django_db
def test_every_field_value_is_prepared_as_django_prepares_it():
    compared = shortcuts = 0
    for _model, field in project_fields():
        how = rows.prepared(field.attname, field, connection)
        shortcuts += bool(how.fast)
        for value in SAMPLES:
            expected = django_way(field, value)
            got = shortcut(how, value)
            if expected[0] == "ok" and got[0] == "ok":
                # The driver's adaptation objects (PostgreSQL's JSON) compare by what they hold.
                left, right = expected[1], got[1]
                if hasattr(left, "obj"):
                    left, right = (left.obj, type(left)), (right.obj, type(right))
                assert (left, type(expected[1])) == (right, type(got[1])), (field, value)
            else:
                assert got == expected, (field, value)
            compared += 1
    assert compared > 1000 and shortcuts > 50  # the comparison covered the shortcuts


@pytest.mark.django_db
def test_a_field_whose_pre_save_stamps_is_stamped():
    field = StepRun._meta.get_field("id")
    assert rows.prepared("id", field, connection).plain_pre_save
    auto_now = [
        f
        for _model, f in project_fields()
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    assert auto_now, "no auto_now field to check"
    for field in auto_now:
        how = rows.prepared(field.attname, field, connection)
        assert not how.plain_pre_save
        instance = field.model()
        setattr(instance, field.attname, None)
        before = timezone.now()
        value = rows.value_of(how, instance, True, connection)
        stamped = getattr(instance, field.attname)
        assert stamped is not None and stamped >= before  # stamped, as save() stamps
        assert value == field.get_db_prep_save(stamped, connection)


def loaded_dicts(queryset):
    return [{k: v for k, v in o.__dict__.items() if k != "_state"} for o in queryset]


@pytest.mark.django_db
def test_objects_are_loaded_as_django_loads_them():
    world = build_world(clerks=2)
    template = published("load", [step("a"), step("b", after=["a"])])
    run = run_start(template=template, context={"x": 1})
    step_execute(step_run_id=run.step_runs.get(position=0).pk)  # an action, a receipt
    checked = 0
    for model in (Agent, BusinessUnit, Run, StepRun, ActionRequest):
        assert issubclass(model, rows.FastLoad)
        fast = list(model.objects.order_by("pk"))
        assert fast, model
        assert all(o._state.adding is False and o._state.db == "default" for o in fast)
        # Django's own way, for the same rows: Model.from_db through __init__.
        slow = [
            models.Model.from_db.__func__(
                model, "default", None, [getattr(o, f.attname) for f in model._meta.concrete_fields]
            )  # fmt: skip
            for o in fast
        ]
        assert loaded_dicts(fast) == loaded_dicts(slow)
        checked += len(fast)
    assert checked >= 5
    # Related objects loaded with them (select_related) are built the same way.
    first = world.agents[0]
    agent = Agent.objects.select_related("role", "business_unit").get(pk=first.pk)
    assert agent.role.pk == first.role_id and agent.business_unit._state.db == "default"


@pytest.mark.django_db
def test_deferred_fields_and_init_receivers_go_djangos_way():
    make_agent(slug="deferred")
    for queryset in (Agent.objects.only("name", "status"), Agent.objects.defer("description")):
        fast = queryset.get()
        slow = models.Model.from_db.__func__(
            Agent, "default", [f.attname for f in Agent._meta.concrete_fields
                               if f.attname in fast.__dict__],
            [fast.__dict__[f.attname] for f in Agent._meta.concrete_fields
             if f.attname in fast.__dict__],
        )  # fmt: skip
        assert fast.get_deferred_fields() == slow.get_deferred_fields() != set()
        assert loaded_dicts([fast]) == loaded_dicts([slow])
    only = Agent.objects.only("name").get()
    assert only.slug == "deferred"  # a deferred field loads on access, as Django's does

    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=Agent)
    try:
        loaded = Agent.objects.get()
    finally:
        post_init.disconnect(receiver, sender=Agent)
    assert seen == [loaded]


def state_of(obj):
    # ``copy.copy`` of a model also records the Django version (pickling's ``__reduce__``).
    return (
        {k: v for k, v in obj.__dict__.items() if k not in ("_state", "_django_version")},
        obj._state.db,
        obj._state.adding,
        dict(obj._state.fields_cache),
    )


@pytest.mark.django_db
def test_attach_sets_what_djangos_descriptor_sets():
    world = build_world(clerks=2)
    first, second = world.agents[0], world.agents[1]
    template = published("attach", [step("a")])
    run = run_start(template=template)
    ours, theirs = (StepRun.objects.get(run=run) for _ in range(2))
    for name, related in (("assignee", first), ("assignee", second), ("run", run)):
        rows.attach(ours, name, related)
        setattr(theirs, name, related)
        assert state_of(ours) == state_of(theirs)
    assert ours.assignee is second and ours.assignee_id == second.pk
    # None, and an object not read from a database, go through Django's descriptor.
    for obj in (ours, StepRun()):
        rows.attach(obj, "assignee", None)
        assert obj.assignee_id is None and obj.assignee is None
    fresh = StepRun()
    rows.attach(fresh, "run", run)
    assert fresh.run_id == run.pk and fresh._state.db == "default"  # set by Django's way
    with pytest.raises(ValueError):
        rows.attach(ours, "run", first)  # not a run: refused, as Django refuses it


@pytest.mark.django_db
def test_copy_model_is_copy_copy():
    import copy

    made = make_agent(slug="copied")
    agent = Agent.objects.select_related("role").get(pk=made.pk)
    ours, theirs = rows.copy_model(agent), copy.copy(agent)
    assert state_of(ours) == state_of(theirs)
    assert ours._state is not agent._state
    assert ours._state.fields_cache is not agent._state.fields_cache
    ours.name = "changed"
    assert agent.name != "changed"


@pytest.mark.django_db
def test_new_builds_what_init_builds():
    from autonomy.models import AuditRecord, ConnectorCall, Operation
    from workflows.models import RunEvent

    world = build_world(clerks=1)
    run = run_start(template=published("new", [step("a")]))
    step_run = run.step_runs.get()
    operation = Operation.objects.select_related("connector").get(slug="extract")
    agent = world.agents[0]
    cases = [
        (RunEvent, {"run": run, "step_run": step_run, "kind": "k", "message": "m", "data": {}}),
        (RunEvent, {"run_id": run.pk, "kind": "k"}),  # a relation by its column
        (ConnectorCall, {"idempotency_key": "key", "operation": operation, "params": {"a": 1}}),
        (AuditRecord, {"kind": "k", "actor": "", "agent_id": agent.pk, "payload": {}}),
        (
            ActionRequest,
            {
                "agent": agent,
                "credential": None,
                "operation": operation,
                "params": {},
                "reason": "r",
                "risk_score": 5,
            },
        ),  # fmt: skip
    ]
    for model, values in cases:
        ours, theirs = model.new(**values), model(**values)
        # Defaults made by a callable (a fresh key, the time) differ between two objects.
        made = {f.attname for f in model._meta.concrete_fields if callable(f.default)}
        mine, django = state_of(ours), state_of(theirs)
        assert {k: v for k, v in mine[0].items() if k not in made} == {
            k: v for k, v in django[0].items() if k not in made
        }, model
        assert set(mine[0]) == set(django[0]) and mine[1:] == django[1:], model
        assert ours._state.adding is True
    with pytest.raises(TypeError, match="unexpected keyword"):
        RunEvent.new(kind="k", colour="blue")  # Django's error, from Django's way


@pytest.mark.django_db
def test_datetime_parameters_are_adapted_as_django_adapts_them():
    for value in [
        timezone.now(),
        timezone.now().replace(microsecond=0),
        datetime.datetime(2026, 3, 1, 12, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime.datetime(2026, 3, 1, 12, 30),  # naive: Django's way
        None,
    ]:
        assert rows.datetime_value(value, connection) == (
            connection.ops.adapt_datetimefield_value(value)
        ), value
    # The shortcut is in use where the database takes text (SQLite), not elsewhere.
    assert rows._UTC_TEXT_DATABASES[connection.alias] is (connection.vendor == "sqlite")
