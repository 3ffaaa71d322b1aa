from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...alerts.evaluation import describe, evaluate, judge_all
from ...models import AlertRule


class Command(BaseCommand):
    help = "Evaluate every active alert rule and fire those whose condition holds (what the beat task does)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--now", help="Evaluate as of this ISO 8601 moment (default: now; without an offset, TIME_ZONE)."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Show the rules that would fire; record and send nothing."
        )

    def handle(self, *args: Any, now: str | None, dry_run: bool, **options: Any) -> None:
        moment = _moment(now) if now else timezone.now()
        if dry_run:
            lines = [
                f"Would fire {rule.name}: {describe(rule, verdict)}"
                for rule, verdict in judge_all(moment)
                if verdict.fires
            ]
        else:
            lines = [
                f"Fired {event.payload['rule']}: {event.payload['summary']}" for event in evaluate(moment)
            ]
        if options["verbosity"]:
            for line in lines:
                self.stdout.write(line)
            rules = AlertRule.objects.filter(is_active=True).count()
            verb = "would fire" if dry_run else "fired"
            self.stdout.write(f"Evaluated {rules} active rules at {moment.isoformat()}: {len(lines)} {verb}.")


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--now must be an ISO 8601 date and time, not {text!r}.") from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment
