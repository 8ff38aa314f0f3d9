"""The embedded broker writes each message atomically: a consumer never reads half of one."""

import os

import pytest
from kombu import Connection

TRANSPORT = "embedded.broker:Transport"


@pytest.fixture
def connection(tmp_path):
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options) as conn:
        yield conn


def test_a_consumer_polling_while_a_message_is_written_finds_nothing(connection, monkeypatch):
    producer, consumer = connection.SimpleQueue("q"), connection.clone().SimpleQueue("q")
    seen_mid_write = []
    replace = os.replace

    def spy(src, dst):
        assert os.path.basename(src).startswith(".") and not os.path.exists(dst)
        try:
            seen_mid_write.append(consumer.get_nowait().payload)
        except consumer.Empty:
            seen_mid_write.append(None)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    producer.put({"body": "hello"})

    assert seen_mid_write == [None]  # kombu's own filesystem transport leaves an empty file
    message = consumer.get_nowait()
    message.ack()
    assert message.payload == {"body": "hello"}
    with pytest.raises(consumer.Empty):
        consumer.get_nowait()
    consumer.close()
