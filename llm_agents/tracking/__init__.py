"""The tracking core: executions and spans from what ran to rows in the database.

Layers, each importing only those before it: :mod:`.records` (what is being recorded),
:mod:`.rows` (redaction, row shaping, the message codec), :mod:`.writer` (the database writes),
:mod:`.transport` (Celery publisher, broker state, spool), :mod:`.lifecycle` (begin, start,
complete, completion hooks). It imports neither budgets nor OpenTelemetry: the app registers
them as completion hooks. See ``docs/architecture.md``.
"""
