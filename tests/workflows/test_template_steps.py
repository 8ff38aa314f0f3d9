"""The engine reads a published version's steps once per process, and never another's."""

import copy
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.workflows.fixtures import build_world, published, step
from workflows import selectors
from workflows.models import Template, TemplateStatus


def test_a_published_versions_steps_are_read_once(db):
    build_world(clerks=1)
    template = published("cached", [step("a"), step("b", after=["a"])])
    first = selectors.template_steps(template)
    assert sorted(s.key for s in first.values()) == ["a", "b"]
    with CaptureQueriesContext(connection) as ctx:
        again = selectors.template_steps(Template.objects.get(pk=template.pk))
    assert len(ctx.captured_queries) == 1  # the template row above; the steps: none
    assert again is first


def test_another_publication_under_the_same_id_reads_its_own_steps(db):
    """A database that reuses an id (a rolled-back test's) must not see the old steps."""
    build_world(clerks=1)
    template = published("reused", [step("a")])
    selectors.template_steps(template)
    other = copy.copy(template)
    other.published_at = template.published_at + timedelta(seconds=1)
    with CaptureQueriesContext(connection) as ctx:
        steps = selectors.template_steps(other)
    assert len(ctx.captured_queries) == 1
    assert [s.key for s in steps.values()] == ["a"]


def test_a_drafts_steps_are_read_every_time(db):
    build_world(clerks=1)
    draft = Template.objects.create(key="draft", name="Draft", status=TemplateStatus.DRAFT)
    assert selectors.template_steps(draft) == {}
    draft.steps.create(key="late", name="Late", operation=None, kind="task")
    assert [s.key for s in selectors.template_steps(draft).values()] == ["late"]


def test_a_copy_loads_related_rows_of_its_own(db):
    world = build_world(clerks=1)
    template = published("copies", [step("a")])
    shared = next(iter(selectors.template_steps(template).values()))
    mine = selectors.step_copy(shared)
    assert mine.assignee_role == world.clerks
    assert not type(shared).assignee_role.is_cached(shared)
