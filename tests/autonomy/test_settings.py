"""Settings come from the environment; production refuses to start without its secrets."""

import json
import os
import subprocess
import sys

import pytest

from tests.realparts import ROOT

PROD_SECRET = "x9!Kq2#vLm7$Rt4&Yp8*Wn3^Zs6(Hd1)Fg5+Jb0=Uc-Ae_Ti~Ol.Me<Ns>Pq?Rr:Ss;Tt"
PROD_SECRETS_KEY = "connector-secrets-key-kept-apart-from-SECRET_KEY-7f3a9c"
PROD_AUDIT_KEY = "audit-record-mac-key-kept-out-of-the-database-41c9e2"
# What a production process is started with in these tests.
PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": PROD_SECRET,
    "ALLOWED_HOSTS": "aos.example.com",
    "AUTONOMY_SECRETS_KEY": PROD_SECRETS_KEY,
    "AUTONOMY_AUDIT_KEY": PROD_AUDIT_KEY,
}
PRINT_DB = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "d = s.DATABASES['default']; "
    "print(json.dumps({'engine': d['ENGINE'], 'name': str(d['NAME']), 'host': d.get('HOST'), "
    "'broker': s.CELERY_BROKER_URL, 'email': s.EMAIL_BACKEND}))"
)


def run(code: str | None = None, args: list[str] | None = None, **env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", **env_overrides})
    command = [sys.executable, "-c", code] if code else [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_nothing_set_means_sqlite_file_embedded_broker_and_console_mail(tmp_path):
    result = run(PRINT_DB, AUTONOMY_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["engine"] == "django.db.backends.sqlite3"
    assert config["name"] == str(tmp_path / "autonomy.sqlite3")
    assert config["broker"].startswith("filesystem://")
    assert config["email"] == "django.core.mail.backends.console.EmailBackend"


@pytest.mark.parametrize(
    "url, engine, name",
    [
        ("sqlite:////tmp/abs/path.db", "django.db.backends.sqlite3", "/tmp/abs/path.db"),
        ("postgres://u:p@db.internal:5432/aos", "django.db.backends.postgresql", "aos"),
        ("postgresql://u@127.0.0.1/aos2", "django.db.backends.postgresql", "aos2"),
    ],
)
def test_database_url_forms(url, engine, name):
    result = run(PRINT_DB, DATABASE_URL=url, CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert (config["engine"], config["name"]) == (engine, name)
    assert config["broker"] == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "missing", ["SECRET_KEY", "ALLOWED_HOSTS", "AUTONOMY_SECRETS_KEY", "AUTONOMY_AUDIT_KEY"]
)
def test_production_refuses_to_start_without_its_secrets(missing):
    env = {name: value for name, value in PRODUCTION.items() if name != missing}
    result = run("import django; django.setup()", **env)
    assert result.returncode != 0
    assert f"{missing} must be set when DJANGO_ENV=production" in result.stderr


def test_production_passes_check_deploy_with_nothing_reported(tmp_path):
    result = run(
        args=["check", "--deploy", "--fail-level", "DEBUG"],
        **PRODUCTION,
        AUTONOMY_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_logs_are_json_with_the_request_id(tmp_path):
    code = (
        "import django, logging; django.setup(); "
        "from autonomy.observability.request_id import request_id_var; "
        "request_id_var.set('req-77'); logging.getLogger('autonomy.test').warning('hello')"
    )
    result = run(
        code,
        **PRODUCTION,
        AUTONOMY_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if "hello" in x)
    record = json.loads(line)
    assert record["message"] == "hello"
    assert record["request_id"] == "req-77"
    assert record["level"] == "WARNING"


def test_production_redirects_to_https_except_the_probes(tmp_path):
    code = (
        "import django; django.setup(); from django.test import Client; "
        "c = Client(HTTP_HOST='aos.example.com'); "
        "print(c.get('/healthz').status_code, c.get('/admin/login/').status_code)"
    )
    result = run(
        code,
        **PRODUCTION,
        AUTONOMY_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "301"]


def test_production_keeps_the_schema_and_the_docs_from_anonymous_callers(tmp_path):
    code = (
        "import django; django.setup(); from django.test import Client; "
        "c = Client(HTTP_HOST='aos.example.com'); "
        "s = c.get('/api/schema/', secure=True); d = c.get('/api/docs/', secure=True); "
        "print(s.status_code, s.json()['error']['code'], d.status_code, d.json()['error']['code'])"
    )
    result = run(
        code,
        **PRODUCTION,
        AUTONOMY_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["401", "not_authenticated", "401", "not_authenticated"]


@pytest.mark.parametrize("keys", ["k", "x" * 31, f"{PROD_SECRETS_KEY},short-old-key"])
def test_production_refuses_a_secrets_key_shorter_than_32_characters(keys):
    result = run(
        "import django; django.setup()",
        **(PRODUCTION | {"AUTONOMY_SECRETS_KEY": keys}),
    )
    assert result.returncode != 0
    assert "every AUTONOMY_SECRETS_KEY must be at least 32 characters" in result.stderr


def test_production_accepts_a_long_secrets_key_and_a_rotation_list(tmp_path):
    result = run(
        "import django; django.setup(); from django.conf import settings; "
        "print(len(settings.AUTONOMY_SECRETS_KEY))",
        **(PRODUCTION | {"AUTONOMY_SECRETS_KEY": f"{'n' * 32},{PROD_SECRETS_KEY}"}),
        AUTONOMY_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "2"


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"AUTONOMY_TLS_PROXY_REDIRECTS": "true"},
        {"SECURE_PROXY_SSL_HEADER": ""},
        {"DATABASE_URL": "postgres://u@127.0.0.1/aos", "CELERY_BROKER_URL": "redis://127.0.0.1/0"},
    ],
)
def test_check_deploy_is_clean_in_every_supported_production_shape(tmp_path, extra):
    result = run(
        args=["check", "--deploy", "--fail-level", "DEBUG"],
        **PRODUCTION,
        AUTONOMY_DATA_DIR=str(tmp_path),
        **extra,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_tls_proxy_that_redirects_takes_the_redirect_over(tmp_path):
    code = (
        "import django; django.setup(); from django.test import Client; "
        "c = Client(HTTP_HOST='aos.example.com'); "
        "print(c.get('/api/v1/').status_code, "
        "c.get('/api/v1/', HTTP_X_FORWARDED_PROTO='https').status_code)"
    )
    result = run(
        code,
        **PRODUCTION,
        AUTONOMY_DATA_DIR=str(tmp_path),
        AUTONOMY_TLS_PROXY_REDIRECTS="true",
    )
    assert result.returncode == 0, result.stderr
    # No redirect to https from Django: the API's own answer (sign in first), both ways.
    assert result.stdout.split() == ["401", "401"]
