from __future__ import annotations

import logging

from django.apps import AppConfig


class LLMAgentsConfig(AppConfig):
    name = "llm_agents"
    label = "llm_agents"
    verbose_name = "LLM agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed
        from django.db.models.signals import post_delete, post_save

        from . import checks  # noqa: F401  (registers the system checks)
        from .pricing import clear_cost_config_cache

        cost_config = self.get_model("CostConfig")
        post_save.connect(
            clear_cost_config_cache, sender=cost_config, dispatch_uid="llm_agents_cost_config_saved"
        )
        post_delete.connect(
            clear_cost_config_cache, sender=cost_config, dispatch_uid="llm_agents_cost_config_deleted"
        )
        self.register_completion_hooks()
        self.install_evals()
        self.install_budget_alerts()
        setting_changed.connect(self.settings_changed, dispatch_uid="llm_agents_settings_changed")
        self.install_instrumentation()

    @staticmethod
    def register_completion_hooks() -> None:
        """What runs after every execution completes: budget settlement, experiment guardrails, and the
        OpenTelemetry export while ``OTEL_EXPORT`` is on (the tracking core imports none of them)."""
        from . import budgets, otel
        from .conf import app_settings
        from .models.experiments import check_experiment_guardrails
        from .tracking import lifecycle

        lifecycle.add_completion_hook(budgets.settle_completed)
        lifecycle.add_completion_hook(check_experiment_guardrails)
        if app_settings.OTEL_EXPORT:
            lifecycle.add_completion_hook(otel.export_completed)
        else:
            lifecycle.remove_completion_hook(otel.export_completed)

    @staticmethod
    def install_evals() -> None:
        """Evaluation runs' batch handler (every process that polls settles them) and the hook counting
        what evaluators' own model calls cost."""
        from .evals import install

        install()

    @staticmethod
    def install_budget_alerts() -> None:
        """Budget alerts and refusals also reach the budget's alert channels."""
        from .alerts.budgets import install

        install()

    @classmethod
    def settings_changed(cls, setting: str, **kwargs: object) -> None:
        if setting == "LLM_AGENTS":
            cls.register_completion_hooks()

    @staticmethod
    def install_instrumentation() -> None:
        """Wrap the openai / anthropic SDK methods that AUTO_INSTRUMENT tracks, when the SDKs are installed.
        The wrappers read the setting on every call, so it can be switched on and off at run time."""
        from importlib.util import find_spec

        if find_spec("openai") is None and find_spec("anthropic") is None:
            return
        from .instrumentation import install

        try:
            install()
        except Exception:
            logging.getLogger("llm_agents").exception(
                "llm_agents could not wrap the LLM SDKs for AUTO_INSTRUMENT"
            )
