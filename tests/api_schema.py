"""The API's OpenAPI schema exactly as ``schema/`` serves it; the docs' HTTP API reference is built from it.

    make api-schema        # rewrites docs/openapi.json (python -m tests.api_schema)

``tests/test_docs.py`` fails when docs/openapi.json differs from what the API serves, so the reference
cannot drift from the code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def served_schema(client: Any) -> dict[str, Any]:
    """The schema ``GET schema/?format=json`` answers to ``client`` (a logged-in staff test client)."""
    from django.urls import reverse

    response = client.get(reverse("llm_agents_api:schema"), {"format": "json"})
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.pop("DATABASE_URL", None)  # an in-memory SQLite database is enough
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0)
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("schema", "schema@example.com", "schema"))
    SCHEMA_FILE.write_text(schema_text(served_schema(client)), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")


if __name__ == "__main__":
    main()
