from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "example_project.demo"
    label = "demo"
    verbose_name = "Demo agents"

    def ready(self) -> None:
        from llm_agents import batches

        from .agents import TicketSummaryHandler

        batches.register_handler("ticket_summary", TicketSummaryHandler())
