"""Signals sent by django-llm-agents.

Every signal is sent with keyword arguments only (``sender`` is the Agent class where there is
one, else the model class). A receiver that raises is logged and never breaks the call; signals
fire even with ``TRACK_EXECUTIONS`` off.
"""

from django.dispatch import Signal

# agent_type, model, tenant_id, execution_id
execution_started = Signal()

# agent_type, execution_id, model, model_used, tenant_id, status, duration_ms, input_tokens,
# output_tokens, total_tokens, input_cost, output_cost, total_cost, cached, attempts_made,
# finish_reason, time_to_first_token_ms — on success only
execution_completed = Signal()

# the payload of execution_completed plus error_class, error_message — on failure only
execution_failed = Signal()

# agent_type, cache_key
cache_hit = Signal()
cache_miss = Signal()
cache_written = Signal()

# agent_type, tenant_id, user_id (the end user, "" when none)
budget_checked = Signal()

# agent_type, tenant_id, user_id, budget, spend, limit, enforcement
budget_exceeded = Signal()

# budget, spend, limit, percent_used — once per budget per period
budget_alert = Signal()

# agent_type, tenant_id, user_id, total_cost, total_tokens
budget_recorded = Signal()

# agent_type, primary_model, used_model, attempts_made
fallback_used = Signal()

# agent_type, models_tried
all_models_exhausted = Signal()

# prompt, version
prompt_version_created = Signal()

# batch
batch_submitted = Signal()
batch_reconciled = Signal()

# score — a Score was stored (sent once the transaction commits)
score_created = Signal()

# run — an EvalRun reached completed or failed (sent once the transaction commits)
eval_run_completed = Signal()

# prompt, label, old_version, new_version — a prompt label moved (sent once the transaction commits;
# old_version is None for a new label)
prompt_label_moved = Signal()

# experiment, version, reason — a variant broke a guardrail and left the split (sent once the
# transaction commits)
experiment_guardrail_tripped = Signal()

# event — an alert rule fired (or a budget alerted or refused a call, when the budget has channels):
# the AlertEvent with its deliveries created (sent once the transaction commits)
alert_fired = Signal()
