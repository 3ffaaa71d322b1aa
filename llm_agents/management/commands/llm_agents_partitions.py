from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, router

from ...conf import app_settings
from ...db import partitions


class Command(BaseCommand):
    help = (
        "Monthly partitions of the executions and spans tables (PostgreSQL >= 13): --enable converts "
        "the tables in place, --ensure creates the coming months, --status lists the partitions."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--enable", action="store_true", help="Convert both tables, in one transaction.")
        action.add_argument("--ensure", action="store_true", help="Create the current and coming months.")
        action.add_argument("--status", action="store_true", help="List the partitions with row estimates.")
        parser.add_argument("--ahead", type=int, default=partitions.DEFAULT_AHEAD,
                            help=f"Months created beyond the current one (default {partitions.DEFAULT_AHEAD}).")  # fmt: skip
        parser.add_argument(
            "--no-partman",
            action="store_true",
            help="Make partitions with plain SQL even when pg_partman exists.",
        )
        parser.add_argument("--database", help="Database alias (default: where executions are written).")

    def handle(self, *args: Any, enable: bool, ensure: bool, status: bool, ahead: int, no_partman: bool,
               database: str | None, **options: Any) -> None:  # fmt: skip
        if ahead < 0:
            raise CommandError(f"--ahead must be 0 or more, not {ahead}.")
        connection = connections[database or router.db_for_write(apps.get_model("llm_agents", "Execution"))]
        if not partitions.is_supported(connection):
            message = (
                f"Partitions are PostgreSQL's (13 or later); database {connection.alias!r} is "
                f"{connection.display_name}: nothing to do."
            )
            if enable:
                raise CommandError(message)
            self.stdout.write(message)
            return
        if enable:
            self.enable(connection, ahead, use_partman=not no_partman, verbosity=options["verbosity"])
        elif ensure:
            created = partitions.ensure(connection, ahead=ahead)
            self.stdout.write(
                f"Created {len(created)} partitions" + (f": {', '.join(created)}" if created else ".")
            )
        else:
            self.status(connection)

    def enable(self, connection: Any, ahead: int, *, use_partman: bool, verbosity: int) -> None:
        try:
            done = partitions.enable(connection, ahead=ahead, use_partman=use_partman)
        except partitions.PartitioningError as exc:
            raise CommandError(str(exc)) from exc
        if not done:
            self.stdout.write("The executions and spans tables are partitioned already.")
        for conversion in done:
            how = "pg_partman" if conversion.partman else "plain SQL"
            self.stdout.write(
                f"{conversion.table}: {conversion.rows} rows moved into {len(conversion.partitions)} partitions "
                f"({how}); {len(conversion.indexes)} indexes rebuilt."
            )
            if conversion.dropped_foreign_keys:
                self.stdout.write(
                    "  foreign keys dropped (the ORM still cascades): "
                    + ", ".join(conversion.dropped_foreign_keys)
                )
            if conversion.dropped_triggers:
                self.stdout.write(
                    "  triggers of the old table (the rollups' are installed again): "
                    + ", ".join(conversion.dropped_triggers)
                )
            if verbosity > 1:
                self.stdout.write("  partitions: " + ", ".join(conversion.partitions))
        if app_settings.PARTITIONING != "monthly":
            self.stdout.write(
                "Set LLM_AGENTS['PARTITIONING'] = 'monthly' so that ensure_partitions creates the coming months "
                "and retention drops whole months."
            )

    def status(self, connection: Any) -> None:
        for table in partitions.tables():
            if not partitions.is_partitioned(connection, table):
                self.stdout.write(f"{table}: not partitioned (manage.py llm_agents_partitions --enable)")
                continue
            keeper = "pg_partman" if partitions.managed_by_partman(connection, table) else "plain SQL"
            found = partitions.partitions(connection, table)
            self.stdout.write(f"{table}: {len(found)} partitions ({keeper})")
            for partition in found:
                span = (
                    "DEFAULT"
                    if partition.is_default
                    else f"{partition.start:%Y-%m-%d} .. {partition.end:%Y-%m-%d}"
                )
                rows = "not analyzed" if partition.rows < 0 else f"~{partition.rows} rows"
                self.stdout.write(f"  {partition.name}  {span}  {rows}")
