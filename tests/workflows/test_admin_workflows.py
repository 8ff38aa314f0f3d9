"""Templates and runs in the admin: drafts are edited, published versions are frozen, and
publish / clone / import / export / start run go through the authoring services."""

import pytest
import yaml
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.models import BusinessUnit
from tests.workflows.fixtures import build_world, diamond, published, step
from workflows import authoring, services
from workflows.admin import TemplateForm
from workflows.models import Run, Template, TemplateStatus


@pytest.fixture
def w(db):
    return build_world()


@pytest.fixture
def staff(client, w):
    client.force_login(w.officer)
    return client


def url(name: str, *args) -> str:
    return reverse(f"admin:workflows_template_{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def draft(key: str, steps: list[dict]) -> Template:
    return authoring.template_from_dict(data={"key": key, "name": key.title(), "steps": steps})


# --- the list -------------------------------------------------------------------------------


def _templates(count: int, source: Template) -> None:
    for n in range(Template.objects.count(), count):
        clone = authoring.template_clone(template=source, key=f"t-{n}", name=f"T {n}")
        if n % 3 == 0:
            clone = authoring.template_publish(template=clone)
            services.run_start(template=clone, context={"amount": n})


def test_template_changelist_queries_do_not_grow_with_templates(
    staff, w, django_assert_max_num_queries
):
    source = diamond()
    _templates(10, source)
    with CaptureQueriesContext(connection) as small:
        response = staff.get(url("changelist"))
    assert response.status_code == 200 and "t-9" in response.text
    _templates(50, source)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = staff.get(url("changelist"))
    assert "t-48" in response.text


def test_changelist_shows_origin_and_runs_count(staff, w):
    source = diamond()
    clone = authoring.template_publish(
        template=authoring.template_clone(template=source, key="po", name="PO")
    )
    for amount in (1, 2):
        services.run_start(template=clone, context={"amount": amount})
    response = staff.get(url("changelist"))
    row = next(r for r in response.text.split("<tr") if ">po<" in r)
    assert "diamond v1" in row and '<td class="field-runs_count">2</td>' in row


# --- publishing -----------------------------------------------------------------------------


def test_publish_button_on_an_invalid_draft_lists_every_error_and_leaves_it_a_draft(staff, w):
    template = draft("invalid", [step("a", after=["zzz"]), step("b", "senior-only")])
    response = staff.post(url("publish", template.pk), follow=True)
    shown = messages_of(response)
    assert shown[0] == "Invalid v1 was not published:"
    assert "step “a”, depends_on: There is no step 'zzz'." in shown
    assert any(
        m.startswith("step “b”, assignee: ") and "no grant on erp.senior-only" in m for m in shown
    )
    assert "There is no step" in response.text  # rendered on the page, not just stored
    template.refresh_from_db()
    assert template.status == TemplateStatus.DRAFT


def test_publish_action_on_the_changelist_publishes_valid_drafts_and_reports_invalid_ones(staff, w):
    good = draft("good", [step("a")])
    bad = draft("bad", [step("a", after=["a"])])
    response = staff.post(
        url("changelist"),
        {"action": "publish_selected", "_selected_action": [good.pk, bad.pk]},
        follow=True,
    )
    shown = messages_of(response)
    assert "step “a”, depends_on: A step cannot depend on itself." in shown
    assert any(m.startswith("Published Good v1.") for m in shown)
    statuses = dict(Template.objects.values_list("key", "status"))
    assert statuses == {"good": "published", "bad": "draft"}


def test_publish_button_publishes_a_valid_draft(staff, w):
    template = draft("fine", [step("a")])
    response = staff.post(url("publish", template.pk))
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.status == TemplateStatus.PUBLISHED


# --- published versions are frozen ----------------------------------------------------------


def test_admin_refuses_to_change_a_published_template(staff, w):
    template = published("frozen", [step("a")])
    page = staff.get(url("change", template.pk))
    assert page.status_code == 200 and 'name="name"' not in page.text  # shown read-only
    response = staff.post(url("change", template.pk), {"name": "Changed", "steps-TOTAL_FORMS": 0})
    assert response.status_code == 403
    template.refresh_from_db()
    assert template.name == "Frozen"


def test_admin_refuses_to_delete_a_published_template(staff, w):
    template = published("frozen", [step("a")])
    assert staff.post(url("delete", template.pk), {"post": "yes"}).status_code == 403
    assert Template.objects.filter(pk=template.pk).exists()


def test_template_form_refuses_edits_of_a_template_published_meanwhile(w):
    template = published("raced", [step("a")])
    form = TemplateForm(
        instance=template,
        data={"key": "raced", "name": "Renamed", "description": "", "context_schema": "{}"},
    )
    assert not form.is_valid()
    assert "make a new version to change it" in str(form.non_field_errors())


def test_a_draft_is_edited_with_steps_and_comma_separated_dependencies(staff, w):
    template = draft("editable", [step("a")])
    a = template.steps.get()
    data = {
        "name": "Editable", "description": "", "business_unit": "", "context_schema": "{}",
        "steps-TOTAL_FORMS": 2, "steps-INITIAL_FORMS": 1, "steps-MIN_NUM_FORMS": 0,
        "steps-MAX_NUM_FORMS": 1000,
    }  # fmt: skip
    for i, (pk, key, deps) in enumerate([(a.pk, "a", ""), ("", "b", " a , ")]):
        data.update({
            f"steps-{i}-id": pk, f"steps-{i}-template": template.pk, f"steps-{i}-key": key,
            f"steps-{i}-name": key.upper(), f"steps-{i}-kind": "operation",
            f"steps-{i}-operation": w.ops["extract"].pk, f"steps-{i}-assignee_role": w.clerks.pk,
            f"steps-{i}-depends_on": deps, f"steps-{i}-input_map": '{"amount": "$.amount"}',
            f"steps-{i}-visible_context": "", f"steps-{i}-approval": "never",
            f"steps-{i}-timeout_seconds": 300, f"steps-{i}-max_retries": 2,
            f"steps-{i}-retry_backoff_seconds": 5, f"steps-{i}-compensation_input_map": "",
        })  # fmt: skip
    response = staff.post(url("change", template.pk), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    steps = dict(template.steps.values_list("key", "depends_on"))
    assert steps == {"a": [], "b": ["a"]}
    assert template.steps.get(key="b").input_map == {"amount": "$.amount"}


# --- new version, clone, export, import, start run ------------------------------------------


def test_new_version_button_makes_the_next_draft_and_opens_it(staff, w):
    v1 = published("versioned", [step("a")])
    response = staff.post(url("new_version", v1.pk))
    v2 = Template.objects.get(key="versioned", version=2)
    assert response["Location"] == url("change", v2.pk)
    assert v2.status == TemplateStatus.DRAFT


def test_clone_for_another_business_unit_end_to_end(staff, w):
    source = diamond()
    procurement = BusinessUnit.objects.create(name="Procurement", slug="procurement")
    form = staff.get(url("clone", source.pk))
    assert form.status_code == 200 and 'value="diamond-copy"' in form.text
    response = staff.post(
        url("clone", source.pk),
        {"key": "po-diamond", "name": "PO diamond", "business_unit": procurement.pk},
        follow=True,
    )
    clone = Template.objects.get(key="po-diamond")
    assert response.redirect_chain[-1][0] == url("change", clone.pk)
    assert (clone.origin, clone.business_unit, clone.status) == (source, procurement, "draft")
    assert "Cloned Diamond v1 as PO diamond v1 (draft) for Procurement." in messages_of(response)
    taken = staff.post(
        url("clone", source.pk),
        {"key": "po-diamond", "name": "Again", "business_unit": procurement.pk},
    )
    assert "A template &#x27;po-diamond&#x27; exists; pick another key." in taken.text
    assert Template.objects.filter(origin=source).count() == 1


def test_export_downloads_the_yaml_document(staff, w):
    template = diamond()
    response = staff.get(url("export", template.pk))
    assert response["Content-Disposition"] == 'attachment; filename="diamond-v1.yaml"'
    assert yaml.safe_load(response.content) == authoring.template_to_dict(template=template)


def test_import_page_creates_a_draft_from_pasted_yaml(staff, w):
    changelist = staff.get(url("changelist"))
    assert url("import") in changelist.text
    text = yaml.safe_dump({"key": "pasted", "name": "Pasted", "steps": [step("a")]})
    response = staff.post(url("import"), {"text": text})
    template = Template.objects.get(key="pasted")
    assert response["Location"] == url("change", template.pk)
    assert template.status == TemplateStatus.DRAFT


def test_import_page_shows_the_yaml_error_and_creates_nothing(staff, w):
    response = staff.post(url("import"), {"text": "key: x\nsteps: [\n"})
    assert response.status_code == 200
    assert "YAML syntax error at line 3, column 1" in response.text
    unknown = yaml.safe_dump({"key": "y", "name": "Y", "steps": [step("a", "nope")]})
    response = staff.post(url("import"), {"text": unknown})
    assert "step “a”, operation: There is no operation &#x27;erp.nope&#x27;." in response.text
    assert not Template.objects.exists()


def test_start_run_from_the_admin_links_to_the_portal_run_page(staff, w):
    template = published("startable", [step("a", input_map={"amount": "$.amount"})])
    change = staff.get(url("change", template.pk))
    assert url("start_run", template.pk) in change.text
    response = staff.post(url("start_run", template.pk), {"context": '{"amount": 12}'}, follow=True)
    run = Run.objects.get()
    assert (run.template, run.context, run.started_by) == (template, {"amount": 12}, "wf-officer")
    assert f'href="/workflows/runs/{run.pk}/"' in response.text
    run_list = staff.get(reverse("admin:workflows_run_changelist"))
    assert f"/workflows/runs/{run.pk}/" in run_list.text


def test_start_run_refuses_a_context_that_is_not_an_object(staff, w):
    template = published("startable", [step("a")])
    response = staff.post(url("start_run", template.pk), {"context": "[1, 2]"})
    assert "The context must be a JSON object." in response.text
    assert not Run.objects.exists()


def test_run_pages_are_read_only(staff, w):
    run = services.run_start(template=published("ro", [step("a")]), context={})
    page = staff.get(reverse("admin:workflows_run_change", args=[run.pk]))
    assert page.status_code == 200 and "run_started" in page.text
    assert 'type="submit"' not in page.text.split('id="content-main"')[1].split("</form>")[0]
    assert staff.post(reverse("admin:workflows_run_delete", args=[run.pk])).status_code == 403
