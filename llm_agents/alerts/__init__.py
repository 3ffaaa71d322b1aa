"""Alerts (SPEC §19): rules evaluated over recent executions (``evaluation``), the events they fire
and their deliveries by email, signed webhook and Slack (``delivery``)."""
