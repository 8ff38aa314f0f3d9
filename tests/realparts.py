"""Real parts the suite needs, and the one way a test says it lacks one.

Without a part, a test skips naming it. With AUTONOMY_REQUIRE_ALL=1 (CI) it fails instead,
so CI always runs the whole suite.
"""

import os
import shutil
import socket
from pathlib import Path

import pytest

REQUIRE_ALL = os.environ.get("AUTONOMY_REQUIRE_ALL") == "1"
ROOT = Path(__file__).resolve().parent.parent


def missing(part: str, hint: str) -> None:
    message = f"missing real part: {part} ({hint})"
    if REQUIRE_ALL:
        pytest.fail(message + " — AUTONOMY_REQUIRE_ALL=1 forbids skipping", pytrace=False)
    pytest.skip(message)


def chromium_path() -> str | None:
    explicit = os.environ.get("AUTONOMY_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def node_provider_ready() -> bool:
    return (
        shutil.which("node") is not None
        and (ROOT / "tests/oidc/node_modules/oidc-provider").exists()
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
