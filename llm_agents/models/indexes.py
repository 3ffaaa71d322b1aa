"""Index classes the models need beyond Django's own."""

from __future__ import annotations

import copy
from typing import Any

from django.db import models


class CoveringIndex(models.Index):
    """An index that carries ``covering`` columns (``INCLUDE``) where the database supports it.

    On PostgreSQL it is ``models.Index(include=...)``. SQLite has no covering indexes: Django would
    build the same key-only index there but warn (``models.W040``) at every ``migrate`` and
    ``check``, so the columns are kept out of ``include`` and added only when the index is created
    on a database that supports them.
    """

    def __init__(self, *args: Any, covering: tuple[str, ...] | list[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.covering = tuple(covering)

    def deconstruct(self) -> Any:
        path, args, kwargs = super().deconstruct()
        kwargs["covering"] = self.covering
        return path, args, kwargs

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        index = copy.copy(self)
        if schema_editor.connection.features.supports_covering_indexes:
            index.include = self.covering
        return models.Index.create_sql(index, model, schema_editor, using=using, **kwargs)
