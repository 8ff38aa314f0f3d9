"""Run-scoped messages between the agents taking part in a run."""

import pytest

from autonomy.errors import DomainError, ErrorCode
from tests.workflows.coordination_fixtures import run_for
from tests.workflows.fixtures import build_world
from workflows import services
from workflows.coordination import MESSAGES_PAGE, message_send, messages_for
from workflows.models import Message


@pytest.fixture
def crew(db):
    """clerk-0 and clerk-1 are assigned to the run; clerk-2 is not."""
    agents = build_world(clerks=3).agents
    return agents, run_for(agents[:2])


def bodies(messages) -> list[dict]:
    return [m.body for m in messages]


def test_message_to_one_agent_is_read_by_that_agent_only(crew):
    (alice, bob, _), run = crew
    message_send(run=run, sender=alice, recipient=bob, body={"text": "invoice is yours"})
    assert bodies(messages_for(agent=bob, run=run)) == [{"text": "invoice is yours"}]
    assert messages_for(agent=alice, run=run) == []


def test_message_to_everyone_is_read_by_every_agent_on_the_run(crew):
    (alice, bob, _), run = crew
    sent = message_send(run=run, sender=bob, body={"text": "ledger locked until noon"})
    assert sent.recipient is None
    assert [m.pk for m in messages_for(agent=alice, run=run)] == [sent.pk]
    assert [m.pk for m in messages_for(agent=bob, run=run)] == [sent.pk]


def test_an_outsider_can_neither_send_nor_read(crew):
    (alice, _, outsider), run = crew
    message_send(run=run, sender=alice, body={"text": "hi all"})
    with pytest.raises(DomainError) as send:
        message_send(run=run, sender=outsider, body={"text": "let me in"})
    with pytest.raises(DomainError) as read:
        messages_for(agent=outsider, run=run)
    assert send.value.code == read.value.code == ErrorCode.PERMISSION_DENIED
    assert send.value.status_code == 403
    assert Message.objects.count() == 1


def test_a_message_cannot_be_addressed_to_an_outsider(crew):
    (alice, _, outsider), run = crew
    with pytest.raises(DomainError) as refused:
        message_send(run=run, sender=alice, recipient=outsider, body={"text": "psst"})
    assert refused.value.code == ErrorCode.VALIDATION_FAILED
    assert refused.value.details == {"recipient": outsider.slug}
    assert not Message.objects.exists()


def test_reading_after_an_id_returns_only_newer_messages_oldest_first(crew):
    (alice, bob, _), run = crew
    sent = [message_send(run=run, sender=alice, body={"n": n}) for n in range(5)]
    newer = messages_for(agent=bob, run=run, after_id=sent[1].pk)
    assert bodies(newer) == [{"n": 2}, {"n": 3}, {"n": 4}]


def test_a_read_returns_a_bounded_page(crew):
    (alice, bob, _), run = crew
    Message.objects.bulk_create(
        Message(run=run, sender=alice, body={"n": n}) for n in range(MESSAGES_PAGE + 5)
    )
    page = messages_for(agent=bob, run=run, limit=10_000)
    assert len(page) == MESSAGES_PAGE and page[0].body == {"n": 0}
    rest = messages_for(agent=bob, run=run, after_id=page[-1].pk)
    assert bodies(rest) == [{"n": n} for n in range(MESSAGES_PAGE, MESSAGES_PAGE + 5)]


def test_each_message_appears_on_the_run_timeline_with_small_bodies_only(crew):
    (alice, bob, _), run = crew
    small = message_send(run=run, sender=alice, recipient=bob, body={"text": "short"})
    large = message_send(run=run, sender=alice, body={"text": "x" * 5000})
    events = list(run.events.filter(kind="message").order_by("id"))
    assert [e.data["message_id"] for e in events] == [small.pk, large.pk]
    assert events[0].actor == alice.slug and events[0].data["recipient"] == bob.slug
    assert events[0].data["body"] == {"text": "short"}
    assert "body" not in events[1].data and events[1].data["body_bytes"] > 5000


def test_an_oversized_or_non_object_body_is_refused(crew):
    (alice, _, _), run = crew
    with pytest.raises(DomainError) as large:
        message_send(run=run, sender=alice, body={"text": "x" * 20_000})
    with pytest.raises(DomainError) as not_object:
        message_send(run=run, sender=alice, body=["a", "list"])
    assert large.value.code == ErrorCode.PAYLOAD_TOO_LARGE
    assert not_object.value.code == ErrorCode.VALIDATION_FAILED
    assert not Message.objects.exists()


def test_a_finished_run_takes_no_more_messages_but_can_still_be_read(crew):
    (alice, bob, _), run = crew
    message_send(run=run, sender=alice, body={"text": "before"})
    services.run_cancel(run=run, by=None, reason="done")
    with pytest.raises(DomainError) as refused:
        message_send(run=run, sender=alice, body={"text": "after"})
    assert refused.value.code == ErrorCode.RUN_NOT_ACTIVE
    assert bodies(messages_for(agent=bob, run=run)) == [{"text": "before"}]
