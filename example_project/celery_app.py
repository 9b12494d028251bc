"""The example shop's Celery app: ``celery -A example_project.celery_app worker``.

The broker is ``CELERY_BROKER_URL`` from the environment (the drill's ``--jobs``
starts a Redis of its own and sets it).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
