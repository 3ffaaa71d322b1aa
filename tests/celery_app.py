"""The Celery app of the test project, configured from the CELERY_* settings (eager by default)."""

from celery import Celery

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["llm_agents"])
app.set_default()
