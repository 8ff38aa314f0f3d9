"""The embedded broker writes each message atomically: a consumer never reads half of one."""

import os
from queue import Empty

import pytest
from kombu import Connection

from autonomy import broker


@pytest.fixture
def channel(tmp_path):
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)}
    with Connection("filesystem://", transport_options=options) as connection:
        assert isinstance(connection.transport, broker.Transport)  # what the app installed
        yield connection.default_channel


def test_a_consumer_polling_while_a_message_is_written_finds_nothing(channel, monkeypatch):
    seen_mid_write = []
    replace = os.replace

    def spy(src, dst):
        assert os.path.basename(src).startswith(".") and not os.path.exists(dst)
        try:
            seen_mid_write.append(channel._get("q"))
        except Empty:
            seen_mid_write.append(None)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    channel._put("q", {"body": "hello"})

    assert seen_mid_write == [None]  # kombu's own _put leaves an empty q file here
    assert channel._get("q") == {"body": "hello"}
    with pytest.raises(Empty):
        channel._get("q")
