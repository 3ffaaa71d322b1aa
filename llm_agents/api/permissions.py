"""Permissions of every API view, read from ``API_PERMISSION_CLASSES`` on each request."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission

from ..conf import app_settings


def api_permissions() -> list[BasePermission]:
    """Instances of the ``API_PERMISSION_CLASSES`` (dotted paths or classes); staff only by default."""
    classes = [
        import_string(path) if isinstance(path, str) else path for path in app_settings.API_PERMISSION_CLASSES
    ]
    return [permission_class() for permission_class in classes]


class ApiPermissionsMixin:
    """Give a DRF view the configured permissions (so ``override_settings`` applies at once)."""

    def get_permissions(self) -> list[Any]:
        return api_permissions()
