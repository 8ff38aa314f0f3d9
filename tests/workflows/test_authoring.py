"""Authoring templates: validation speaks the author's language, YAML round-trips, published
versions never change, and runs keep the version they started on."""

import pytest
import yaml

from agents.models import BusinessUnit
from autonomy.errors import DomainError, ErrorCode
from tests.workflows.fixtures import build_world, diamond, published, step
from workflows import authoring, services, yaml_io
from workflows.models import Run, Template, TemplateStatus


@pytest.fixture
def w(db):
    return build_world()


def draft(key: str, steps: list[dict], **extra) -> Template:
    return authoring.template_from_dict(
        data={"key": key, "name": key.title(), "steps": steps, **extra}
    )


def publish_errors(template: Template) -> list[dict]:
    with pytest.raises(DomainError) as caught:
        authoring.template_publish(template=template)
    assert caught.value.code == ErrorCode.TEMPLATE_INVALID
    return caught.value.details["errors"]


# --- the three validation errors the issue asks for -----------------------------------------


def test_a_cycle_is_refused_at_publish_naming_the_steps_of_the_cycle(w):
    template = draft(
        "loop", [step("a", after=["c"]), step("b", after=["a"]), step("c", after=["b"])]
    )
    errors = publish_errors(template)
    cycle = [e for e in errors if "cycle" in e["message"]]
    assert len(cycle) == 1 and cycle[0]["field"] == "depends_on"
    assert cycle[0]["message"].startswith("The steps form a cycle: ")
    assert set(
        cycle[0]["message"].removeprefix("The steps form a cycle: ").rstrip(".").split(" → ")
    ) == {"a", "b", "c"}
    template.refresh_from_db()
    assert template.status == TemplateStatus.DRAFT


def test_an_unknown_operation_in_imported_yaml_names_the_step_and_field(w):
    text = yaml.safe_dump(
        {
            "key": "bad-op",
            "name": "Bad",
            "steps": [step("extract"), step("post", "nope", after=["extract"])],
        }  # fmt: skip
    )
    with pytest.raises(DomainError) as caught:
        yaml_io.template_import_yaml(text=text, by=w.officer)
    assert caught.value.code == ErrorCode.TEMPLATE_INVALID
    assert caught.value.details["errors"] == [
        {"step": "post", "field": "operation", "message": "There is no operation 'erp.nope'."}
    ]
    assert "There is no operation 'erp.nope'." in caught.value.message
    assert not Template.objects.filter(key="bad-op").exists()


def test_an_assignee_without_a_grant_is_refused_with_a_clear_message(w):
    template = draft("ungranted", [step("a", "senior-only", role="wf-clerk")])
    errors = publish_errors(template)
    assert errors == [
        {
            "step": "a",
            "field": "assignee",
            "message": f"{w.clerks} has no grant on erp.senior-only: grant it the operation or its"
            " connector, or pick another assignee.",
        }
    ]


def test_the_same_step_with_a_granted_assignee_publishes(w):
    template = draft("granted", [step("a", "senior-only", role="wf-senior")])
    assert authoring.template_publish(template=template).status == TemplateStatus.PUBLISHED


# --- YAML -----------------------------------------------------------------------------------


def test_yaml_export_then_import_gives_an_equal_template_document(w):
    original = diamond()
    text = yaml_io.template_export_yaml(template=original)
    imported = yaml_io.template_import_yaml(text=text, by=w.officer)
    assert (imported.key, imported.version, imported.status) == ("diamond", 2, "draft")
    before = authoring.template_to_dict(template=original)
    after = authoring.template_to_dict(template=imported)
    assert {**after, "version": 1} == before
    assert before["steps"][3]["compensation_operation"] == "erp.void-invoice"


def test_malformed_yaml_is_refused_with_its_line_and_column_and_creates_nothing(w):
    text = "key: broken\nname: Broken\nsteps:\n  - key: a\n    depends_on: [b\n"
    with pytest.raises(DomainError) as caught:
        yaml_io.template_import_yaml(text=text, by=w.officer)
    assert caught.value.code == ErrorCode.TEMPLATE_INVALID
    assert caught.value.message.startswith("YAML syntax error at line 6, column 1:")
    assert caught.value.details["line"] == 6
    assert caught.value.details["errors"][0]["field"] == "yaml"
    assert not Template.objects.exists()


def test_yaml_that_is_not_a_template_document_is_refused(w):
    with pytest.raises(DomainError) as caught:
        yaml_io.template_import_yaml(text="- just\n- a list\n", by=w.officer)
    assert (
        caught.value.message == "The YAML document must be a mapping with a key, a name and steps."
    )


def test_yaml_aliases_and_oversized_documents_are_refused(w):
    with pytest.raises(DomainError, match="aliases"):
        yaml_io.template_import_yaml(text="a: &x [1, 2]\nb: *x\n", by=w.officer)
    with pytest.raises(DomainError, match="larger than 256 KiB"):
        yaml_io.template_import_yaml(text="#" * (yaml_io.MAX_YAML_BYTES + 1), by=w.officer)
    assert not Template.objects.exists()


# --- versions and clones --------------------------------------------------------------------


def test_a_published_template_is_immutable(w):
    template = published("frozen", [step("a")])
    with pytest.raises(DomainError) as caught:
        authoring.ensure_editable(template)
    assert caught.value.code == ErrorCode.TEMPLATE_IMMUTABLE
    assert "make a new version to change it" in caught.value.message
    with pytest.raises(DomainError) as again:
        authoring.template_publish(template=template)
    assert again.value.code == ErrorCode.TEMPLATE_IMMUTABLE


def test_a_new_version_is_a_draft_with_the_next_number_and_the_same_steps(w):
    v1 = published("versioned", [step("a"), step("b", after=["a"])])
    v2 = authoring.template_new_version(template=v1, by=w.officer)
    v3 = authoring.template_new_version(template=v1, by=w.officer)
    assert (v2.version, v2.status, v3.version) == (2, TemplateStatus.DRAFT, 3)
    assert list(v2.steps.values_list("key", "depends_on")) == [("a", []), ("b", ["a"])]


def test_a_clone_keeps_its_origin_and_takes_its_business_unit(w):
    source = diamond()
    procurement = BusinessUnit.objects.create(name="Procurement", slug="procurement")
    clone = authoring.template_clone(
        template=source,
        key="po-diamond",
        name="PO diamond",
        business_unit=procurement,
        by=w.officer,
    )
    clone.refresh_from_db()
    assert clone.origin == source and clone.business_unit == procurement
    assert (clone.key, clone.version, clone.status) == ("po-diamond", 1, TemplateStatus.DRAFT)
    assert clone.steps.count() == source.steps.count()


def test_a_run_keeps_the_version_it_started_on_when_a_new_one_is_published(eager, world):
    v1 = published("pinned", [step("t", None), step("a", after=["t"])])
    run = services.run_start(template=v1, context={}, by=world.officer)
    v2 = authoring.template_publish(template=authoring.template_new_version(template=v1))
    assert authoring.latest_published(key="pinned") == v2
    run = Run.objects.get(pk=run.pk)
    assert run.template == v1
    assert set(run.step_runs.values_list("step__template", flat=True)) == {v1.pk}
