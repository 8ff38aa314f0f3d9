"""Settings, all read from the environment.

With nothing set, Autonomy OS runs on one laptop: a SQLite file, an embedded Celery broker
(kombu's filesystem transport, which works across processes) and console e-mail. Production
is chosen by ``DJANGO_ENV=production``, which refuses to start without its secrets.
"""

import json
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in ("development", "production"):
    raise ImproperlyConfigured("DJANGO_ENV must be 'development' or 'production'")
PRODUCTION = DJANGO_ENV == "production"

DATA_DIR = Path(env.str("AUTONOMY_DATA_DIR", default=str(BASE_DIR / "var")))

if PRODUCTION:
    # No defaults: a production process without its secrets must not start.
    for required in ("SECRET_KEY", "ALLOWED_HOSTS", "AUTONOMY_SECRETS_KEY"):
        if not env.str(required, default=""):
            raise ImproperlyConfigured(f"{required} must be set when DJANGO_ENV=production")
    SECRET_KEY = env.str("SECRET_KEY")
    DEBUG = False
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-change-me-in-production")
    DEBUG = env.bool("DEBUG", default=True)
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Keys that encrypt connector secrets at rest, comma-separated: the first encrypts, every one
# decrypts, so a rotation puts the new key first (autonomy/connectors/vault.py). Required in
# production; derived from SECRET_KEY in development.
AUTONOMY_SECRETS_KEY = env.list("AUTONOMY_SECRETS_KEY", default=[f"dev-derived:{SECRET_KEY}"])
# A key anyone could guess protects nothing: production refuses one shorter than this (every
# key of the list, old ones kept for decryption included).
AUTONOMY_SECRETS_KEY_MIN_LENGTH = 32
if PRODUCTION and any(len(k) < AUTONOMY_SECRETS_KEY_MIN_LENGTH for k in AUTONOMY_SECRETS_KEY):
    raise ImproperlyConfigured(
        f"every AUTONOMY_SECRETS_KEY must be at least {AUTONOMY_SECRETS_KEY_MIN_LENGTH} characters"
        " when DJANGO_ENV=production (make one: python -c"
        " 'import secrets; print(secrets.token_urlsafe(48))')"
    )

# The audit trail's keys, never stored in the database (autonomy/audit/keys.py), each a list:
# the first keys or signs, every one verifies, so a rotation puts the new key first.
# AUTONOMY_AUDIT_KEY MACs every record (required in production); AUTONOMY_AUDIT_SIGNING_KEY
# signs the checkpoints published outside the database. Derived from SECRET_KEY, each with
# a salt of its own, in development. Keys shorter than 32 characters are refused.
if PRODUCTION and not env.str("AUTONOMY_AUDIT_KEY", default=""):
    raise ImproperlyConfigured("AUTONOMY_AUDIT_KEY must be set when DJANGO_ENV=production")
AUTONOMY_AUDIT_KEY = env.list("AUTONOMY_AUDIT_KEY", default=[f"dev-derived-audit:{SECRET_KEY}"])
AUTONOMY_AUDIT_SIGNING_KEY = env.list(
    "AUTONOMY_AUDIT_SIGNING_KEY", default=[f"dev-derived-audit-signing:{SECRET_KEY}"]
)
for _name, _keys in (
    ("AUTONOMY_AUDIT_KEY", AUTONOMY_AUDIT_KEY),
    ("AUTONOMY_AUDIT_SIGNING_KEY", AUTONOMY_AUDIT_SIGNING_KEY),
):
    if not _keys or any(len(_key) < 32 for _key in _keys):
        raise ImproperlyConfigured(f"{_name}: every key must be at least 32 characters")
# Where signed checkpoints of the audit chain's head are appended (a JSON-lines file), and
# the sink class that writes them (autonomy.audit.checkpoint.FileSink, or the operator's own).
AUTONOMY_AUDIT_HEAD_SINK = env.str(
    "AUTONOMY_AUDIT_HEAD_SINK", default=str(DATA_DIR / "audit-checkpoints.jsonl")
)
AUTONOMY_AUDIT_HEAD_SINK_CLASS = env.str(
    "AUTONOMY_AUDIT_HEAD_SINK_CLASS", default="autonomy.audit.checkpoint.FileSink"
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "guardian",
    "auditlog",
    "mozilla_django_oidc",
    "autonomy",
    "agents",
    "workflows",
    "approvals",
    "interventions",
    "compliance",
    "reviews",
    "portal",
    "governance",
    "demo",
]

MIDDLEWARE = [
    "autonomy.observability.request_id.RequestIdMiddleware",
    "autonomy.api.errors.APIErrorPageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "agents.context_processors.sign_in",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'autonomy.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker share one file: WAL lets readers run beside a writer,
    # IMMEDIATE transactions and a busy timeout turn lock contention into a short wait.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests use a file too, so that a real Celery worker process can see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-autonomy.sqlite3")}
# Persistent connections on every backend. The request cycle, and each Celery task
# (``config/celery.py``), close a connection older than this, or broken; at 0 (Django's
# default) every workflow step opened SQLite afresh: a new connection, its PRAGMAs, the schema
# parsed again and a cold page cache, ~2 ms before its first query (measured).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# Celery's Django fix-up closes the database connection before and after every task unless
# told to reuse it, so CONN_MAX_AGE did nothing on workers: a PostgreSQL worker opened a new
# session per task (1,367 for 1,365 actions, measured under load). It reuses it now, and
# ``close_old_connections`` around each task drops one past its age or broken, as Django's
# request cycle does.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1_000_000)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters bound by the server, and a statement run this many times on a connection
    # prepared there: parsed and planned once, not on every run. Django leaves both off. A
    # workflow step runs ~30 statements, the same ones every step: in one process, on this
    # project's 2-core VMs, 12.3-14.1 ms per step without them, 8.3-9.1 ms with them.
    # ``AUTONOMY_PG_PREPARE_THRESHOLD=`` (empty) turns preparing off, e.g. behind a
    # transaction-mode PgBouncer that cannot keep prepared statements.
    _prepare = env.str("AUTONOMY_PG_PREPARE_THRESHOLD", default="5")
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=int(_prepare) if _prepare else None
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds counters that limit abuse (failed API tokens per address): processes that
# serve one portal should share it, e.g. CACHE_URL=redis://host:6379/1.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# --- Auth -----------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out client before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
    "agents.oidc.PortalOIDCBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/admin/"
LOGOUT_REDIRECT_URL = "/admin/login/"
LOGIN_REDIRECT_URL_FAILURE = "/signin/refused/"

# Humans sign in through the enterprise IdP (OpenID Connect). Endpoints are explicit so that
# any IdP works; when OIDC_RP_CLIENT_ID is empty the portal offers local accounts only.
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
OIDC_OP_INTROSPECTION_ENDPOINT = env.str("OIDC_OP_INTROSPECTION_ENDPOINT", default="")
OIDC_OP_LOGOUT_ENDPOINT = env.str("OIDC_OP_LOGOUT_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile groups")
OIDC_CREATE_USER = True
OIDC_USE_PKCE = True
OIDC_STORE_ID_TOKEN = False
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env.int("OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS", default=900)
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
OIDC_VERIFY_SSL = env.bool("OIDC_VERIFY_SSL", default=True)
OIDC_TIMEOUT = env.int("OIDC_TIMEOUT", default=10)
# The DRF bearer path validates an agent's access token by introspection (RFC 7662).
OIDC_DRF_AUTH_BACKEND = "agents.oidc.AgentOIDCBackend"
# IdP group claim -> portal role. A person with none of these groups cannot sign in.
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
AUTONOMY_OIDC_GROUP_ROLES = json.loads(
    env.str(
        "AUTONOMY_OIDC_GROUP_ROLES",
        default=json.dumps(
            {
                "autonomy-it-admins": "it_admin",
                "autonomy-risk-officers": "risk_officer",
                "autonomy-approvers": "approver",
                "autonomy-auditors": "auditor",
                "autonomy-viewers": "viewer",
            }
        ),
    )
)

# Local password logins (the admin's login form, the only one) lock out after this many
# failures of one username from one address, for AXES_COOLOFF_HOURS; OIDC sign-in and API
# tokens are not counted here (the IdP throttles its own logins; tokens: below).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ONLY_ADMIN_SITE = True
AXES_WHITELIST_CALLABLE = "agents.authentication.not_a_password_login"
# One rule for the client's address, for logins and API tokens alike: REMOTE_ADDR, or behind
# NUM_PROXIES trusted proxies the address they append to X-Forwarded-For (DRF's rule).
AXES_CLIENT_IP_CALLABLE = "agents.authentication.client_address"
# Failed API bearer tokens (agent tokens and IdP access tokens) per client address: past this
# many in the window, every bearer request from that address answers 429 rate_limited with
# Retry-After until the window ends (agents/authentication.py). Counted in the cache.
AUTONOMY_TOKEN_FAILURE_LIMIT = env.int("AUTONOMY_TOKEN_FAILURE_LIMIT", default=20)
AUTONOMY_TOKEN_FAILURE_WINDOW_SECONDS = env.int(
    "AUTONOMY_TOKEN_FAILURE_WINDOW_SECONDS", default=300
)

GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row, nobody anonymous gets grants

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents.authentication.AgentTokenAuthentication",
        "agents.authentication.ThrottledOIDCAuthentication",
        "agents.user_tokens.PersonalTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["autonomy.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "autonomy.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "autonomy.api.unavailable.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # 0: X-Forwarded-For is ignored (a client could write any address in it).
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Autonomy OS API",
    "DESCRIPTION": "The control plane between AI agents and business systems.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema maps every endpoint and parameter: only a signed-in person or an
    # authenticated API client reads it, or its docs page.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI from this server's static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RiskTierEnum": "agents.models.RiskTier",
        "ActionStatusEnum": "autonomy.models.ActionStatus",
        "AgentStatusEnum": "agents.models.AgentStatus",
        "AutonomyLevelEnum": "autonomy.models.AutonomyLevel",
        "DataClassEnum": "autonomy.models.DataClass",
        # Two models' ``kind``: the interventions' keeps the name it had before approvals
        # grew one.
        "KindEnum": "autonomy.models.InterventionKind",
        "ApprovalKindEnum": "approvals.models.ApprovalKind",
        # A person's verdict on an approval, beside the gate's (allow, deny, needs approval).
        "ApprovalVerdictEnum": "approvals.models.Verdict",
        # Access reviews: a review's status, its items' kind and their answer.
        "AccessReviewStatusEnum": "reviews.models.ReviewStatus",
        "ReviewItemKindEnum": "reviews.models.ItemKind",
        "ReviewDecisionEnum": "reviews.models.Decision",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "autonomy.api.schema.document_errors",
    ],
}
# Request bodies larger than this are refused with 413 payload_too_large.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
# JSON bodies nested deeper than this are refused with 400 json_too_deep (api/parsers.py).
AUTONOMY_MAX_JSON_DEPTH = env.int("AUTONOMY_MAX_JSON_DEPTH", default=64)

# Gate defaults for agents without their own limits.
AUTONOMY_DEFAULT_ACTIONS_PER_MINUTE = env.int("AUTONOMY_DEFAULT_ACTIONS_PER_MINUTE", default=120)
AUTONOMY_DEFAULT_DAILY_SPEND = env.int("AUTONOMY_DEFAULT_DAILY_SPEND", default=250_000)
# Parameters larger than this (as JSON) are refused with params_too_large.
AUTONOMY_MAX_PARAMS_BYTES = env.int("AUTONOMY_MAX_PARAMS_BYTES", default=64 * 1024)

# Approvals: how long a request waits, when it escalates (and reminds at half that).
AUTONOMY_APPROVAL_TTL_SECONDS = env.int("AUTONOMY_APPROVAL_TTL_SECONDS", default=24 * 3600)
AUTONOMY_APPROVAL_ESCALATE_SECONDS = env.int("AUTONOMY_APPROVAL_ESCALATE_SECONDS", default=4 * 3600)
AUTONOMY_APPROVAL_LINK_MAX_AGE = env.int("AUTONOMY_APPROVAL_LINK_MAX_AGE", default=24 * 3600)
# Suggestions from history (approvals.suggestions): a pattern (operation, agent role, business
# unit) approved unchanged at least MIN_APPROVED times and rejected at most MAX_REJECTED times
# over the last WINDOW_DAYS is proposed to policy owners. A proposed standing approval allows
# up to HEADROOM times the busiest day's approvals a day, for STANDING_DAYS days.
AUTONOMY_SUGGEST_MIN_APPROVED = env.int("AUTONOMY_SUGGEST_MIN_APPROVED", default=20)
AUTONOMY_SUGGEST_MAX_REJECTED = env.int("AUTONOMY_SUGGEST_MAX_REJECTED", default=0)
AUTONOMY_SUGGEST_WINDOW_DAYS = env.int("AUTONOMY_SUGGEST_WINDOW_DAYS", default=14)
AUTONOMY_SUGGEST_HEADROOM = env.float("AUTONOMY_SUGGEST_HEADROOM", default=1.2)
AUTONOMY_SUGGEST_STANDING_DAYS = env.int("AUTONOMY_SUGGEST_STANDING_DAYS", default=7)
# Access reviews (reviews app): an agent with no action in this many days is dormant, a grant
# its agent has not used in this many days is over-privileged (and a credential made that
# long ago and never used is flagged), a credential expiring within this many days is listed;
# a review is due this many days after it opens, and escalates when answers are still missing.
AUTONOMY_REVIEW_DORMANT_DAYS = env.int("AUTONOMY_REVIEW_DORMANT_DAYS", default=30)
AUTONOMY_REVIEW_UNUSED_DAYS = env.int("AUTONOMY_REVIEW_UNUSED_DAYS", default=90)
AUTONOMY_REVIEW_EXPIRING_DAYS = env.int("AUTONOMY_REVIEW_EXPIRING_DAYS", default=30)
AUTONOMY_REVIEW_DUE_DAYS = env.int("AUTONOMY_REVIEW_DUE_DAYS", default=14)
AUTONOMY_SUGGEST_REFRESH_SECONDS = env.float("AUTONOMY_SUGGEST_REFRESH_SECONDS", default=900.0)
# Where people reach the portal, for links in e-mails.
AUTONOMY_PORTAL_URL = env.str("AUTONOMY_PORTAL_URL", default="http://127.0.0.1:8000")
# The demo ERP/CRM/ITSM (``python -m demo.systems``); seed_demo points the demo connectors at
# it when set (``make run`` sets it), else they answer from the built-in ledger.
AUTONOMY_DEMO_SYSTEMS_URL = env.str("AUTONOMY_DEMO_SYSTEMS_URL", default="")

# Networks connectors may reach besides the public internet, as CIDRs (connectors/outbound.py).
# Development allows loopback for the demo ERP/CRM/ITSM; link-local and cloud metadata
# addresses are refused whatever this says.
AUTONOMY_CONNECTOR_ALLOWED_NETWORKS = env.list(
    "AUTONOMY_CONNECTOR_ALLOWED_NETWORKS", default=[] if PRODUCTION else ["127.0.0.0/8", "::1/128"]
)

AUTONOMY_CREDENTIAL_ROTATION_OVERLAP_SECONDS = env.int(
    "AUTONOMY_CREDENTIAL_ROTATION_OVERLAP_SECONDS", default=24 * 3600
)

# Observability: /metrics is open in development; otherwise it wants this bearer token or a
# staff session. Traces go out over OTLP/HTTP only when an endpoint is set.
AUTONOMY_METRICS_TOKEN = env.str("AUTONOMY_METRICS_TOKEN", default="")
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
    # The embedded default only (``embedded/``): kombu's filesystem transport writing each
    # message atomically, and Celery's threads pool, which has no child processes to lose
    # (billiard's blocking prefork pool, the one a broker without an event loop gets, hangs
    # for good when an idle child is killed).
    INSTALLED_APPS.append("embedded")
    CELERY_BROKER_TRANSPORT = "embedded.broker:Transport"
    CELERY_WORKER_POOL = "threads"
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="autonomy")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publish that finds the broker away (a restart, a failover) is retried for ~20 s instead
# of Celery's ~0.6 s, so the work goes out when the broker returns, not when a sweep finds it
# (config/celery.py resends what a restarted broker lost).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": env.int("AUTONOMY_PUBLISH_RETRIES", default=40),
    "interval_start": 0,
    "interval_step": 0.25,
    "interval_max": 0.5,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Time-based work runs on Celery beat, never on page loads.
CELERY_BEAT_SCHEDULE = {
    "approvals-sweep": {"task": "approvals.tasks.approvals_sweep", "schedule": 30.0},
    "actions-redispatch": {
        "task": "autonomy.tasks.actions_redispatch",
        "schedule": env.float("AUTONOMY_ACTIONS_SWEEP_SECONDS", default=15.0),
    },
    "usage-prune": {"task": "autonomy.tasks.usage_prune", "schedule": 3600.0},
    "workflows-sweep": {
        "task": "workflows.tasks.workflows_sweep",
        "schedule": env.float("AUTONOMY_WORKFLOW_SWEEP_SECONDS", default=10.0),
    },
    "claims-sweep": {
        "task": "workflows.tasks.claims_sweep",
        "schedule": env.float("AUTONOMY_CLAIMS_SWEEP_SECONDS", default=5.0),
    },
    "drift-sweep": {"task": "agents.tasks.drift_sweep", "schedule": 60.0},
    "baselines-learn": {"task": "agents.tasks.baselines_learn", "schedule": 86400.0},
    # Opens each quarter's access review for every unit without one, and escalates reviews
    # past due; both are idempotent, so a daily check is enough.
    "reviews-schedule": {"task": "reviews.tasks.reviews_schedule", "schedule": 86400.0},
    "reviews-escalate": {"task": "reviews.tasks.reviews_escalate", "schedule": 3600.0},
    "suggestions-refresh": {
        "task": "approvals.tasks.suggestions_refresh",
        "schedule": AUTONOMY_SUGGEST_REFRESH_SECONDS,
    },
}
# The audit sealer chains appended records this often; the signed head is published this often.
AUTONOMY_AUDIT_SEAL_SECONDS = env.float("AUTONOMY_AUDIT_SEAL_SECONDS", default=1.0)
AUTONOMY_AUDIT_PUBLISH_SECONDS = env.float("AUTONOMY_AUDIT_PUBLISH_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE["audit-seal"] = {
    "task": "autonomy.tasks.audit_seal",
    "schedule": AUTONOMY_AUDIT_SEAL_SECONDS,
}
CELERY_BEAT_SCHEDULE["audit-publish"] = {
    "task": "autonomy.tasks.audit_publish",
    "schedule": AUTONOMY_AUDIT_PUBLISH_SECONDS,
}
# A worker that finishes a step which made exactly one next step of its run ready executes
# that one at once, up to this many in a row, instead of sending it through the broker
# (workflows.services.step_work); 0 sends every step.
AUTONOMY_WORKFLOW_INLINE_STEPS = env.int("AUTONOMY_WORKFLOW_INLINE_STEPS", default=50)
# A ready step whose message has not started it after this long is dispatched again.
AUTONOMY_WORKFLOW_REDISPATCH_SECONDS = env.int("AUTONOMY_WORKFLOW_REDISPATCH_SECONDS", default=60)
# Each worker process writes a heartbeat this often (autonomy.liveness; 0: none, and the
# work of a worker that died waits out its lease: the step's timeout, or
# AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS). The sweeps take back the running actions and
# steps of a worker whose last beat is older than AUTONOMY_WORKER_LOST_SECONDS.
AUTONOMY_WORKER_BEAT_SECONDS = env.float("AUTONOMY_WORKER_BEAT_SECONDS", default=5.0)
AUTONOMY_WORKER_LOST_SECONDS = env.float("AUTONOMY_WORKER_LOST_SECONDS", default=20.0)
# Rollout plans are measured this often (the charts on a plan's page, and promotions proposed
# when the next wave's criteria hold); measurements are kept this many days.
AUTONOMY_ROLLOUT_MEASURE_SECONDS = env.float("AUTONOMY_ROLLOUT_MEASURE_SECONDS", default=60.0)
AUTONOMY_ROLLOUT_KEEP_DAYS = env.int("AUTONOMY_ROLLOUT_KEEP_DAYS", default=14)
CELERY_BEAT_SCHEDULE["rollouts-measure"] = {
    "task": "autonomy.tasks.rollouts_measure",
    "schedule": AUTONOMY_ROLLOUT_MEASURE_SECONDS,
}
# Shared memory (autonomy.memory): an entry written without a time to live lives this long,
# none longer than the maximum; expired entries are never read, and pruned this often.
AUTONOMY_MEMORY_DEFAULT_TTL_SECONDS = env.int(
    "AUTONOMY_MEMORY_DEFAULT_TTL_SECONDS", default=30 * 24 * 3600
)
AUTONOMY_MEMORY_MAX_TTL_SECONDS = env.int(
    "AUTONOMY_MEMORY_MAX_TTL_SECONDS", default=365 * 24 * 3600
)
CELERY_BEAT_SCHEDULE["memory-prune"] = {
    "task": "autonomy.tasks.memory_prune",
    "schedule": env.float("AUTONOMY_MEMORY_PRUNE_SECONDS", default=600.0),
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# An approved action no worker has started this long after its decision is sent again (its
# publish, made after commit off the request thread, was lost).
AUTONOMY_ACTION_REDISPATCH_SECONDS = env.int("AUTONOMY_ACTION_REDISPATCH_SECONDS", default=30)
# Per-agent minute counters the gate reads (``autonomy.usage``) are kept this many days.
AUTONOMY_USAGE_KEEP_DAYS = env.int("AUTONOMY_USAGE_KEEP_DAYS", default=2)
# Under load, the publisher thread waits this long after an approved action before
# publishing, so that the actions decided meanwhile go out as one message; after a quiet
# spell it publishes at once (0: always at once). See autonomy/dispatch.py.
AUTONOMY_PUBLISH_LINGER_MS = env.int("AUTONOMY_PUBLISH_LINGER_MS", default=25)
# An executing action whose worker has said nothing for this long may be executed again (the
# connector's idempotency key keeps it to one side effect); a younger one is left alone.
AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS = env.int(
    "AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS", default=300
)
# A worker whose database connection drops while it executes an action reconnects and
# records the outcome itself for this long, instead of leaving the action to its lease.
AUTONOMY_ACTION_RECONNECT_SECONDS = env.float("AUTONOMY_ACTION_RECONNECT_SECONDS", default=30.0)
# How long the MCP gateway holds a tool call open for its action to run or be decided.
AUTONOMY_MCP_WAIT_SECONDS = env.float("AUTONOMY_MCP_WAIT_SECONDS", default=30.0)

# --- E-mail ---------------------------------------------------------------------------------
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default=_email["EMAIL_BACKEND"])
EMAIL_HOST = _email.get("EMAIL_HOST", "")
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(DATA_DIR / "mail"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Autonomy OS <autonomy@localhost>")

# --- I18N, static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Tests and the embedded default serve static files from the apps directly (no collectstatic).
WHITENOISE_USE_FINDERS = not PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Content-Security-Policy (django-csp) -----------------------------------------------------
# Everything from this origin, nothing inline: pages load their scripts and styles from static
# files (no <script> bodies, style="" attributes or on...= handlers in the templates), and
# nothing from another origin. data: images are Swagger UI's and the admin's icons.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Production hardening -------------------------------------------------------------------
if PRODUCTION:
    # Behind a TLS-terminating proxy that redirects plain HTTP itself, say so with
    # AUTONOMY_TLS_PROXY_REDIRECTS=true: Django then leaves the redirect to it, and check
    # --deploy is told why it cannot see one (security.W008).
    TLS_PROXY_REDIRECTS = env.bool("AUTONOMY_TLS_PROXY_REDIRECTS", default=False)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not TLS_PROXY_REDIRECTS)
    if TLS_PROXY_REDIRECTS and not SECURE_SSL_REDIRECT:
        SILENCED_SYSTEM_CHECKS = ["security.W008"]
    # Load balancers probe over plain HTTP inside the network: no redirect for the probes.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    # The header the TLS proxy sets on the requests it forwards (and strips from clients'):
    # "HTTP_X_FORWARDED_PROTO" by default; empty when no proxy, so a client cannot claim TLS.
    _proxy_header = env.str("SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO")
    SECURE_PROXY_SSL_HEADER = (_proxy_header, "https") if _proxy_header else None
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "autonomy.observability.request_id.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "json" if (PRODUCTION or env.bool("LOG_JSON", default=False)) else "text",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.utils.autoreload": {"level": "WARNING"},
        # django-axes logs every login at INFO; its lockouts are warnings.
        "axes": {"level": "WARNING"},
    },
}
