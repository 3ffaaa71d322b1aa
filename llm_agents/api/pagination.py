"""Page-number pagination: ``page`` and ``page_size`` (at most 500; default ``API_PAGE_SIZE``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from ..conf import app_settings
from ..models.pagination import LargeTablePaginator
from .params import parse_int

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.views import APIView

MAX_PAGE_SIZE = 500


class ApiPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        default = min(int(app_settings.API_PAGE_SIZE), MAX_PAGE_SIZE)
        return parse_int(request.query_params, "page_size", default, 1, MAX_PAGE_SIZE)

    def paginate_queryset(
        self, queryset: QuerySet[Any, Any] | Sequence[Any], request: Request, view: APIView | None = None
    ) -> list[Any] | None:
        if request.query_params.get(self.page_query_param) not in self.last_page_strings:
            parse_int(request.query_params, self.page_query_param, 1, 1, 2**31 - 1)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == "page":
                parameter["schema"]["minimum"] = 1
            elif parameter["name"] == "page_size":
                parameter["schema"].update(minimum=1, maximum=MAX_PAGE_SIZE)
                parameter["description"] = (
                    f"Results per page, at most {MAX_PAGE_SIZE}; default API_PAGE_SIZE."
                )
        return parameters


class ExecutionPagination(ApiPagination):
    """``executions/``: counted as the admin's executions list is (``LargeTablePaginator``: the
    planner's estimate when unfiltered and large, the rollups when filtered on their keys)."""

    django_paginator_class = LargeTablePaginator
