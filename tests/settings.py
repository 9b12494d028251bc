"""Settings for the package's own test suite.

The database HOST and PORT are filled in by tests/conftest.py once the
session's LocalCluster is up: nothing here depends on a server of the machine.
"""

from __future__ import annotations

from pathlib import Path

#: The project directory, as in a startproject layout (the maintenance switch defaults here).
BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django_pg_resilience",
    "django_pg_resilience.contrib.celery",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

DATABASES = {
    "default": {
        "ENGINE": "django_pg_resilience.backend",
        "NAME": "postgres",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "1",  # replaced by tests/conftest.py with the session endpoint's port
        "OPTIONS": {"connect_timeout": 2},
    }
}

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

PG_RESILIENCE: dict[str, object] = {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_pg_resilience": {"handlers": ["null"], "level": "DEBUG"}},
}

# django-tenants' backend subclasses this one (tests/backend/test_tenants.py); it reads the
# setting when its module is first imported.
ORIGINAL_BACKEND = "django_pg_resilience.backend"
