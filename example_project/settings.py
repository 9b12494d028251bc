"""Settings of the example shop, read from the environment (django-environ).

Every value has a default that works on a developer machine; the drill sets
``DATABASE_URL`` to its endpoint proxy. ``PG_RESILIENCE_ENABLED=false`` turns
the whole package off (Django's stock backend, no 503 middleware, a naive
webhook view): the drill's ``--engine stock`` comparison.
"""

from __future__ import annotations

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="example-project-not-secret")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

#: The Shopify app's client secret(s), comma separated: the first signs, all verify (rotation).
SHOPIFY_WEBHOOK_SECRETS = env.list("SHOPIFY_WEBHOOK_SECRET", default=["example-shopify-secret"])
#: Acknowledge a webhook only once a standby has flushed its commit.
SHOPIFY_DURABLE_ACK = env.bool("SHOPIFY_DURABLE_ACK", default=False)

#: False: run as a plain Django site would (stock backend, naive webhooks).
PG_RESILIENCE_ENABLED = env.bool("PG_RESILIENCE_ENABLED", default=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_pg_resilience",
    "example_project.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
if PG_RESILIENCE_ENABLED:
    # The job-key table of the idempotent Celery tasks (shop/tasks.py).
    INSTALLED_APPS.append("django_pg_resilience.contrib.celery")
    # First, so that it sees the errors of every other middleware too.
    MIDDLEWARE.insert(0, "django_pg_resilience.middleware.DatabaseUnavailableMiddleware")

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        engine=(
            "django_pg_resilience.backend"
            if PG_RESILIENCE_ENABLED
            else "django.db.backends.postgresql"
        ),
    )
}
# Stock Django would otherwise wait 130 s (psycopg's default) for a dead host;
# 2 s is libpq's minimum and what a managed database's docs suggest.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 2)

PG_RESILIENCE: dict[str, object] = {
    # Extra nodes for `manage.py health`: name=postgres://... pairs, comma separated.
    "NODES": env.dict("PG_RESILIENCE_NODES", default={}),
    # The longest wait between two tries of a background job in an outage (the
    # drill's tests shrink it to drain quickly).
    "JOB_OUTAGE_RETRY_CAP": env.float("JOB_OUTAGE_RETRY_CAP", default=60.0),
}

# A read-only endpoint (a managed database's standby): reads go there through
# the replica router unless it lags, is down, or lacks the client's own writes.
if PG_RESILIENCE_ENABLED and env.str("REPLICA_DATABASE_URL", default=""):
    DATABASES["replica"] = env.db_url("REPLICA_DATABASE_URL", engine="django_pg_resilience.backend")
    DATABASES["replica"].setdefault("OPTIONS", {}).update(
        connect_timeout=2,
        # Give up on a dead replica at once: the router falls back to the primary.
        resilience={"read_write": False, "deadline": 0.3, "max_attempts": 1},
    )
    DATABASE_ROUTERS = ["django_pg_resilience.routers.ReplicaRouter"]
    # Before SessionMiddleware: a session saved by a request is one of its writes.
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.sessions.middleware.SessionMiddleware"),
        "django_pg_resilience.routers.ReplicaRouterMiddleware",
    )
    PG_RESILIENCE["MAX_REPLICA_LAG"] = env.float("MAX_REPLICA_LAG", default=1.0)
#: Celery (``celery -A example_project.celery_app worker``): Redis as the broker and the
#: result store. acks_late makes a message outlive a worker that died running it.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR.parent / "out" / "static"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_pg_resilience": {
            "handlers": ["console"],
            "level": env.str("PG_RESILIENCE_LOG_LEVEL", default="WARNING"),
        },
    },
}
