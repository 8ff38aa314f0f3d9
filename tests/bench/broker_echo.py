"""Echo server for the broker benchmark: reads ``ping`` messages, answers on ``pong``."""

import sys

from kombu import Connection


def main(url: str, options: str, count: int) -> None:
    import json

    from autonomy import broker

    # filesystem:// as the product uses it: kombu's own transport can hand a reader a file
    # its writer has not filled yet, which stopped this echo (and the figure) now and then.
    broker.install()
    with Connection(url, transport_options=json.loads(options)) as conn:
        ping = conn.SimpleQueue("bench-ping")
        pong = conn.SimpleQueue("bench-pong")
        print("ready", flush=True)
        for _ in range(count):
            message = ping.get(block=True, timeout=60)
            pong.put(message.payload)
            message.ack()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
