from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/llm-agents/", include("llm_agents.api.urls")),
]
