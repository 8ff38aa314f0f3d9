"""``python -m demo.systems --port 8100``: the demo ERP, CRM and ITSM in one process."""

import argparse
import logging
import signal
import sys
import threading

from demo.systems.server import default_database, make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.systems", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--database",
        default=None,
        help="SQLite file (default: $AUTONOMY_DATA_DIR/demo-systems.sqlite3)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s demo.systems %(message)s",
    )
    server = make_server(host=args.host, port=args.port, database=args.database)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"demo systems ready on {server.url}: /erp/ /crm/ /itsm/ "
        f"(OpenAPI at /<system>/openapi.json; data in {args.database or default_database()})",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
