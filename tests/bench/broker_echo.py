"""Echo server for the broker benchmark: reads ``ping`` messages, answers on ``pong``."""

import sys

from kombu import Connection


def transport_for(url: str) -> str | None:
    """filesystem:// as the product uses it (``embedded.broker``): kombu's own transport can
    hand a reader a file its writer has not filled yet, which stopped this echo now and then."""
    return "embedded.broker:Transport" if url.startswith("filesystem://") else None


def main(url: str, options: str, count: int) -> None:
    import json

    with Connection(
        url, transport=transport_for(url), transport_options=json.loads(options)
    ) as conn:
        ping = conn.SimpleQueue("bench-ping")
        pong = conn.SimpleQueue("bench-pong")
        print("ready", flush=True)
        for _ in range(count):
            message = ping.get(block=True, timeout=60)
            pong.put(message.payload)
            message.ack()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
