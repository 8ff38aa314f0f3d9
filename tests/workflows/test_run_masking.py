"""The run page shows step outputs (in the context and its diffs) through autonomy.masking:
an operation's declared sensitive results are masked to people without view_sensitive."""

import json

from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from agents.portal_roles import PortalRole, group_name
from agents.services import portal_roles_sync
from autonomy import masking
from tests.factories import UserFactory
from tests.workflows.fixtures import published, step
from workflows import selectors, services


def _person(username: str, role: PortalRole):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


def test_the_run_page_masks_declared_results_in_its_context_and_diffs(world):
    portal_roles_sync()
    run = services.run_start(template=published("masked", [step("a")]), context={"n": 1})
    services.step_execute(step_run_id=run.step_runs.get().pk)
    run.refresh_from_db()
    output = run.context["a"]
    assert isinstance(output, dict) and output, output
    key = sorted(output)[0]
    value = json.dumps(output[key], ensure_ascii=False)
    operation = world.ops["extract"]
    operation.sensitive_results = {key: "pii"}
    operation.save(update_fields=["sensitive_results"])

    viewer = _person("viewer-m", PortalRole.VIEWER)
    timeline = selectors.run_timeline(run_id=run.pk, viewer=viewer)
    assert timeline.context["a"][key] == masking.masked("pii")
    assert timeline.context["n"] == 1
    (diff_event,) = [e for e in timeline.events if e.diff_key == "a"]
    texts = " ".join(row.after_text for row in diff_event.diff)
    assert masking.masked("pii") in texts and value not in texts

    client = Client()
    client.force_login(viewer)
    page = client.get(reverse("workflows:run-detail", args=[run.pk])).content.decode()
    assert masking.masked("pii") in page

    auditor = _person("auditor-m", PortalRole.AUDITOR)
    assert selectors.run_timeline(run_id=run.pk, viewer=auditor).context["a"] == output
