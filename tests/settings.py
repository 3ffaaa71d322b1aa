"""Test settings: SQLite in memory unless DATABASE_URL names another database."""

import os

import environ

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
# English only, so the schema's `lang` choices (docs/openapi.json) are the same on every Django version.
LANGUAGES = [("en", "English")]
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "llm_agents",
    "example_project.demo",  # the demo's support tickets (and the demo command's tests)
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": environ.Env.db_url_config(os.environ.get("DATABASE_URL", "sqlite://:memory:")),
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Eager (in-process) unless a broker is named, as the integration tests' worker does.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_TASK_ALWAYS_EAGER = "CELERY_BROKER_URL" not in os.environ
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery closes Django's database connections around every task unless told to reuse them.
if "CELERY_DB_REUSE_MAX" in os.environ:
    CELERY_DB_REUSE_MAX = int(os.environ["CELERY_DB_REUSE_MAX"])
# The fault tests shorten the time after which a dead worker's unacknowledged messages return.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("LLM_AGENTS_VISIBILITY_TIMEOUT", 3600))
}

from tests.celery_app import app as celery_app  # noqa: E402,F401  (makes it the default Celery app)
