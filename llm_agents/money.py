"""Money as the product shows it: US dollars rounded to 8 decimal places, written in fixed notation.

Every analytics result passes its amounts through :func:`money`, and the exports write decimals with
:func:`plain`, so no figure carries the long tails of a database's decimal arithmetic (SQLite's sums,
PostgreSQL's averages) or is written in exponent form (``0E-8``).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

PLACES = Decimal("0.00000001")


def money(value: Decimal | float | int | str | None) -> Decimal:
    """``value`` in US dollars rounded half up to 8 places (None, an aggregate of no rows, is 0).

    Zero is ``Decimal("0")``: zero quantized to 8 places prints as ``0E-8``."""
    rounded = Decimal(value if value is not None else 0).quantize(PLACES, rounding=ROUND_HALF_UP)
    return rounded if rounded else Decimal(0)


def plain(value: Any) -> Any:
    """``value`` as an export writes it: a Decimal in fixed notation (``0.00000000``, not ``0E-8``),
    anything else unchanged."""
    return format(value, "f") if isinstance(value, Decimal) else value
