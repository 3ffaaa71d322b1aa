from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

pytest_plugins = ["tests.fake_servers", "tests.browser"]


@pytest.fixture
def paris():
    """Run the test with ``TIME_ZONE = "Europe/Paris"`` (UTC+1 in winter, UTC+2 in summer)."""
    with override_settings(TIME_ZONE="Europe/Paris"):
        yield timezone.get_default_timezone()


@pytest.fixture
def frozen_now(monkeypatch):
    """``frozen_now(moment)`` makes ``django.utils.timezone.now()`` return ``moment`` for the test.

    Only for results that depend on the calendar itself (days in the month); elsewhere tests place
    their rows relative to the real ``timezone.now()``.
    """

    def freeze(moment: dt.datetime) -> dt.datetime:
        assert timezone.is_aware(moment)
        monkeypatch.setattr(timezone, "now", lambda: moment)
        return moment

    return freeze


@pytest.fixture
def staff_superuser(django_user_model):
    return django_user_model.objects.create_superuser(
        username="admin", email="admin@example.com", password="password"
    )


@pytest.fixture
def staff_client(client, staff_superuser):
    """A test client logged in as a staff superuser."""
    client.force_login(staff_superuser)
    return client


@pytest.fixture(autouse=True)
def fresh_cost_configs():
    """Rolled-back test transactions send no post_delete, so forget cost configs between tests."""
    from llm_agents.pricing import clear_cost_config_cache

    clear_cost_config_cache()
    yield
    clear_cost_config_cache()
