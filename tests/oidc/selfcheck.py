"""End-to-end self-check of the loopback test OpenID Connect provider (no Django).

Run from the repository root:  .venv/bin/python tests/oidc/selfcheck.py
Starts tests/oidc/provider.mjs (runs `npm ci` first if node_modules is missing),
drives the code flow and the client-credentials/introspection/revocation flow
with `requests`, stops the provider, and exits non-zero on any failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import requests

HERE = Path(__file__).resolve().parent
REDIRECT_URI = "http://127.0.0.1:9/oidc/callback/"  # unreachable on purpose
POST_LOGOUT_URI = "http://127.0.0.1:9/"

CONFIG = {
    "port": 0,
    "issuer_host": "127.0.0.1",
    "clients": [
        {
            "client_id": "portal",
            "client_secret": "portal-secret",
            "redirect_uris": [REDIRECT_URI],
            "post_logout_redirect_uris": [POST_LOGOUT_URI],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        },
        {
            "client_id": "agent-1",
            "client_secret": "agent-secret",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "response_types": [],
        },
    ],
    "users": [
        {
            "sub": "alice",
            "password": "alice-pw",
            "email": "alice@example.com",
            "given_name": "Alice",
            "family_name": "Risk",
            "groups": ["autonomy-risk-officers"],
        }
    ],
}

results: list[tuple[bool, str]] = []


def check(cond: bool, label: str, detail: object = "") -> None:
    results.append((bool(cond), label))
    print(
        ("ok   " if cond else "FAIL ")
        + label
        + (f"  [{detail}]" if not cond and detail != "" else "")
    )
    if not cond:
        raise AssertionError(label)


def jwt_payload(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def start_provider(config_path: str) -> tuple[subprocess.Popen, str, list[str]]:
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    proc = subprocess.Popen(
        ["node", str(HERE / "provider.mjs"), config_path],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr_lines: list[str] = []
    threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True).start()
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=20)
    line = ready[0] if ready else ""
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(
            f"provider did not become ready: {line!r} stderr={''.join(stderr_lines)}"
        )
    return proc, line.split(" ", 1)[1].strip(), stderr_lines


def follow_until_redirect_uri(sess: requests.Session, resp: requests.Response) -> requests.Response:
    """Follow redirects manually (like a browser) but stop before leaving for REDIRECT_URI."""
    for _ in range(10):
        if resp.status_code not in (301, 302, 303, 307, 308):
            return resp
        location = urljoin(resp.url, resp.headers["Location"])
        if location.startswith(REDIRECT_URI) or location.startswith(POST_LOGOUT_URI):
            return resp
        resp = sess.get(location, allow_redirects=False, timeout=10)
    raise RuntimeError("too many redirects")


def login_form(resp: requests.Response) -> str:
    m = re.search(r'<form[^>]*method="post"[^>]*action="([^"]+)"', resp.text)
    assert m, resp.text[:500]
    return urljoin(resp.url, m.group(1))


def start_auth(sess: requests.Session, disco: dict, state: str, nonce: str) -> requests.Response:
    resp = sess.get(
        disco["authorization_endpoint"],
        params={
            "client_id": "portal",
            "response_type": "code",
            "scope": "openid email profile groups",
            "redirect_uri": REDIRECT_URI,
            "state": state,
            "nonce": nonce,
        },
        allow_redirects=False,
        timeout=10,
    )
    return follow_until_redirect_uri(sess, resp)


def run(issuer: str) -> None:
    disco = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    for key in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "end_session_endpoint",
        "revocation_endpoint",
    ):
        check(key in disco, f"discovery lists {key}: {disco.get(key)}")
    check(disco["issuer"] == issuer, "discovery issuer matches READY line")
    check(
        "RS256" in disco.get("id_token_signing_alg_values_supported", []), "RS256 id_token signing"
    )
    jwks = requests.get(disco["jwks_uri"], timeout=10).json()
    check(
        any(k.get("kty") == "RSA" and "d" not in k for k in jwks["keys"]),
        "JWKS has a public RSA key only",
    )

    # --- wrong password: form re-rendered with an error, no code
    bad = requests.Session()
    page = start_auth(bad, disco, "s-bad", "n-bad")
    check(
        page.status_code == 200
        and 'name="login"' in page.text
        and 'name="password"' in page.text
        and "Sign in</button>" in page.text,
        "authorization request shows login form",
    )
    resp = bad.post(
        login_form(page),
        data={"login": "alice", "password": "nope"},
        allow_redirects=False,
        timeout=10,
    )
    check(
        resp.status_code == 200
        and "Invalid username or password" in resp.text
        and 'name="password"' in resp.text
        and "code=" not in resp.headers.get("Location", ""),
        "wrong password re-renders form with error, no code",
    )

    # --- right password: code flow
    sess = requests.Session()
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    page = start_auth(sess, disco, state, nonce)
    resp = sess.post(
        login_form(page),
        data={"login": "alice", "password": "alice-pw"},
        allow_redirects=False,
        timeout=10,
    )
    resp = follow_until_redirect_uri(sess, resp)
    location = resp.headers.get("Location", "")
    check(
        location.startswith(REDIRECT_URI),
        "login redirects to redirect_uri (no consent screen)",
        location or resp.text[:300],
    )
    qs = parse_qs(urlparse(location).query)
    check("code" in qs and qs.get("state") == [state], "code and state returned", qs)
    check(qs.get("iss") == [issuer], "iss authorization response parameter", qs.get("iss"))

    tok = requests.post(
        disco["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": qs["code"][0],
            "redirect_uri": REDIRECT_URI,
            "client_id": "portal",
            "client_secret": "portal-secret",
        },
        timeout=10,
    )
    check(tok.status_code == 200, "token exchange with client_secret_post", tok.text)
    tokens = tok.json()
    check({"access_token", "id_token"} <= tokens.keys(), "access_token and id_token issued")
    header = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[0] + "=="))
    claims = jwt_payload(tokens["id_token"])
    check(header.get("alg") == "RS256", "id_token alg RS256", header)
    check(
        claims.get("nonce") == nonce
        and claims.get("aud") == "portal"
        and claims.get("iss") == issuer,
        "id_token nonce/aud/iss",
        claims,
    )
    check(
        claims.get("groups") == ["autonomy-risk-officers"]
        and claims.get("email") == "alice@example.com",
        "id_token carries email and groups",
        claims,
    )

    ui = requests.get(
        disco["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    check(ui.status_code == 200, "userinfo 200", ui.text)
    info = ui.json()
    expected = {
        "sub": "alice",
        "email": "alice@example.com",
        "email_verified": True,
        "given_name": "Alice",
        "family_name": "Risk",
        "preferred_username": "alice",
        "groups": ["autonomy-risk-officers"],
    }
    check(all(info.get(k) == v for k, v in expected.items()), f"userinfo claims {info}", info)

    # basic auth also accepted by the portal client (code is single-use, so check with a fresh flow)
    page = start_auth(sess, disco, "s2", "n2")  # session cookie => no login form, straight to code
    location = page.headers.get("Location", "")
    check(
        location.startswith(REDIRECT_URI) and "code=" in location,
        "SSO session: second authorization skips login",
    )
    code2 = parse_qs(urlparse(location).query)["code"][0]
    tok2 = requests.post(
        disco["token_endpoint"],
        data={"grant_type": "authorization_code", "code": code2, "redirect_uri": REDIRECT_URI},
        auth=("portal", "portal-secret"),
        timeout=10,
    )
    check(
        tok2.status_code == 200 and "id_token" in tok2.json(),
        "token exchange with client_secret_basic",
        tok2.text,
    )

    # --- client credentials + introspection + revocation
    cc = requests.post(
        disco["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=("agent-1", "agent-secret"),
        timeout=10,
    )
    check(
        cc.status_code == 200 and "access_token" in cc.json(),
        "client_credentials grant for agent",
        cc.text,
    )
    agent_token = cc.json()["access_token"]
    portal_auth = ("portal", "portal-secret")

    intro = requests.post(
        disco["introspection_endpoint"], data={"token": agent_token}, auth=portal_auth, timeout=10
    ).json()
    check(
        intro.get("active") is True and intro.get("client_id") == "agent-1",
        "portal introspects agent token: "
        f"active={intro.get('active')} client_id={intro.get('client_id')}",
        intro,
    )
    intro_post = requests.post(
        disco["introspection_endpoint"],
        data={"token": agent_token, "client_id": "portal", "client_secret": "portal-secret"},
        timeout=10,
    ).json()
    check(intro_post.get("active") is True, "introspection with client_secret_post", intro_post)
    junk = requests.post(
        disco["introspection_endpoint"], data={"token": "not-a-token"}, auth=portal_auth, timeout=10
    ).json()
    check(junk == {"active": False}, "unknown token introspects as inactive", junk)

    rv = requests.post(
        disco["revocation_endpoint"],
        data={"token": agent_token, "token_type_hint": "access_token"},
        auth=portal_auth,
        timeout=10,
    )
    check(rv.status_code == 200, "portal revokes agent token", rv.text)
    intro = requests.post(
        disco["introspection_endpoint"], data={"token": agent_token}, auth=portal_auth, timeout=10
    ).json()
    check(intro.get("active") is False, "revoked token introspects as inactive", intro)

    bad_secret = requests.post(
        disco["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=("agent-1", "wrong"),
        timeout=10,
    )
    check(bad_secret.status_code == 401, "wrong agent secret rejected", bad_secret.status_code)

    # --- RP-initiated logout ends the IdP session
    lo = sess.get(
        disco["end_session_endpoint"],
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": POST_LOGOUT_URI,
            "state": "bye",
        },
        timeout=10,
    )
    m = re.search(r'<form[^>]*action="([^"]+)"[^>]*>.*?name="xsrf" value="([^"]+)"', lo.text, re.S)
    check(
        lo.status_code == 200 and m is not None,
        "end_session renders auto-submitting logout form",
        lo.text[:300],
    )
    resp = sess.post(
        urljoin(lo.url, m.group(1)),
        data={"xsrf": m.group(2), "logout": "yes"},
        allow_redirects=False,
        timeout=10,
    )
    resp = follow_until_redirect_uri(sess, resp)
    check(
        resp.headers.get("Location", "").startswith(POST_LOGOUT_URI),
        "logout redirects to post_logout_redirect_uri",
        resp.headers.get("Location"),
    )
    page = start_auth(sess, disco, "s3", "n3")
    check(
        page.status_code == 200 and 'name="password"' in page.text,
        "after logout, login form is shown again",
    )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "oidc.json")
        with open(cfg, "w") as fh:
            json.dump(CONFIG, fh)
        t0 = time.monotonic()
        proc, issuer, stderr_lines = start_provider(cfg)
        print(f"provider ready at {issuer} in {time.monotonic() - t0:.2f}s")
        failed = False
        try:
            run(issuer)
        except Exception as exc:  # noqa: BLE001
            failed = True
            if not isinstance(exc, AssertionError):
                print(f"FAIL unexpected error: {exc!r}")
        finally:
            proc.terminate()
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = None
            print(f"provider stopped on SIGTERM, exit code {rc}")
            if rc != 0:
                failed = True
            extra = proc.stdout.read()
            if extra.strip():
                print(f"FAIL unexpected extra stdout: {extra!r}")
                failed = True
            if stderr_lines:
                print("provider stderr:\n" + "".join(stderr_lines))
    passed = sum(ok for ok, _ in results)
    print(f"{passed}/{len(results)} checks passed" + (" -- FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
