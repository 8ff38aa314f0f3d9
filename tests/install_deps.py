"""Install what the test suite needs that a package registry can give, beyond PyPI.

- Chromium from Debian's packages (only when missing and we may install: root or sudo).
- The OIDC provider (node's ``oidc-provider``) from the npm registry, into tests/oidc.

Nothing here is fatal: a part that cannot be had makes its tests skip with its name, and
CI (AUTONOMY_REQUIRE_ALL=1) turns such skips into failures.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OIDC_DIR = ROOT / "tests" / "oidc"
CHROMIUM = ("chromium", "chromium-browser")


def say(message: str) -> None:
    print(f"[test deps] {message}", flush=True)


def chromium_path() -> str | None:
    explicit = os.environ.get("AUTONOMY_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return next((p for p in map(shutil.which, CHROMIUM) if p), None)


def ensure_chromium() -> None:
    if chromium_path():
        return
    if shutil.which("apt-get") is None:
        say("chromium missing and no apt-get here: browser tests will skip (set AUTONOMY_CHROMIUM)")
        return
    if os.geteuid() == 0:
        prefix = []
    elif (
        shutil.which("sudo")
        and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
    ):
        prefix = ["sudo", "-n"]
    else:
        say("chromium missing and no root/sudo: browser tests will skip (apt-get install chromium)")
        return
    say("installing Debian's chromium (once)…")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=False, env=env)
    result = subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
        env=env,
    )
    if result.returncode != 0:
        say("could not install chromium: browser tests will skip")


def ensure_oidc_provider() -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        say("node/npm missing: OIDC sign-in tests will skip (install Node.js 20+)")
        return
    lock = OIDC_DIR / "package-lock.json"
    marker = OIDC_DIR / "node_modules" / ".installed-lock"
    if marker.exists() and marker.read_text() == lock.read_text():
        return
    say("installing the OIDC test provider from npm…")
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=OIDC_DIR)
    if result.returncode == 0:
        marker.write_text(lock.read_text())
    else:
        say("npm ci failed: OIDC sign-in tests will skip")


if __name__ == "__main__":
    ensure_chromium()
    ensure_oidc_provider()
    sys.exit(0)
