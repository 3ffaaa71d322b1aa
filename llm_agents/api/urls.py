"""``path("api/llm-agents/", include("llm_agents.api.urls"))``."""

from __future__ import annotations

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from . import evaluations, operations, prompts, quality, views

app_name = "llm_agents_api"

router = SimpleRouter()
router.register("budgets", views.BudgetViewSet, basename="budget")
router.register("prompts", prompts.PromptViewSet, basename="prompt")
router.register("experiments", prompts.ExperimentViewSet, basename="experiment")
router.register("batches", views.BatchViewSet, basename="batch")
router.register("datasets", evaluations.DatasetViewSet, basename="dataset")
router.register(
    r"datasets/(?P<dataset_slug>[-a-zA-Z0-9_]+)/items",
    evaluations.DatasetItemViewSet,
    basename="dataset-item",
)
router.register("evals", evaluations.EvalRunViewSet, basename="eval-run")
router.register("pauses", operations.AgentPauseViewSet, basename="pause")

urlpatterns = [
    path("overview/", views.OverviewView.as_view(), name="overview"),
    path("executions/", views.ExecutionListView.as_view(), name="execution-list"),
    path("executions/<uuid:pk>/", views.ExecutionDetailView.as_view(), name="execution-detail"),
    path("agents/", views.AgentListView.as_view(), name="agent-list"),
    path("agents/<str:agent_type>/stats/", views.AgentStatsView.as_view(), name="agent-stats"),
    path("costs/summary/", views.CostSummaryView.as_view(), name="cost-summary"),
    path("costs/forecast/", views.CostForecastView.as_view(), name="cost-forecast"),
    path("trends/", views.TrendsView.as_view(), name="trends"),
    path("comparison/models/", views.ModelComparisonView.as_view(), name="model-comparison"),
    path("comparison/versions/", views.VersionComparisonView.as_view(), name="version-comparison"),
    path("errors/", views.ErrorsView.as_view(), name="errors"),
    path("export/", views.ExportView.as_view(), name="export"),
    path("sessions/", quality.SessionListView.as_view(), name="session-list"),
    # Any session id, slashes and line breaks included.
    re_path(
        r"^sessions/(?P<session_id>[\s\S]+)/$", quality.SessionDetailView.as_view(), name="session-detail"
    ),
    path("scores/", quality.ScoreListView.as_view(), name="score-list"),
    path("scores/summary/", quality.ScoreSummaryView.as_view(), name="score-summary"),
    path("feedback/", quality.FeedbackView.as_view(), name="feedback"),
    path("schema/", views.SchemaView.as_view(), name="schema"),
    *router.urls,
]
