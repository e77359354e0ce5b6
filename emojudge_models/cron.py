"""Five-field cron expressions, checked the way Dagster's schedules accept them, without importing Dagster.

``EMOJUDGE_RESCORE_CRON`` becomes a Dagster schedule; an expression Dagster refuses (``99 99 * * *``) used to pass the
settings and fail later, when the definitions loaded in a run. This checks each field's values and ranges (numbers,
``*``, ``?`` in the day fields, ``a-b`` (wrapping when ``b < a``, as croniter reads it), ``/step``, lists, month and
weekday names) and the impossible dates Dagster rejects (30 or 31 February), so the settings refuse it at start in
one line. Croniter's extensions (``L``, ``#``, seconds, ``@daily``) are refused too: the rescoring schedule needs none.
"""

from __future__ import annotations

import re

FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
"""(name, lowest, highest, names counted from lowest) of each field, in order."""

_ITEM = re.compile(r"(?P<range>\*|\?|[a-z0-9]+(-[a-z0-9]+)?)(/(?P<step>\d+))?")
_FEBRUARY = 2


class CronError(ValueError):
    """An expression Dagster would refuse, with the field at fault."""


def _value(text: str, low: int, high: int, names: tuple[str, ...], field: str) -> int:
    if text in names:
        return low + names.index(text)
    if not text.isdigit() or not low <= int(text) <= high:
        raise CronError(f"{field} {text!r} is not in {low}-{high}")
    return int(text)


def _field_values(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """The values one field selects (raises :class:`CronError` when any item is malformed or out of range)."""
    values: set[int] = set()
    for item in text.lower().split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise CronError(f"{field} {item!r} is not a number, range, list or step")
        span, step = match.group("range"), int(match.group("step") or 1)
        if step == 0:
            raise CronError(f"{field} step must be at least 1")
        if span == "?" and field not in ("day of month", "day of week"):
            raise CronError(f"'?' is only allowed in the day fields, not {field}")
        if span in ("*", "?"):
            first, last = low, high
        else:
            first_text, _, last_text = span.partition("-")
            first = _value(first_text, low, high, names, field)
            last = _value(last_text, low, high, names, field) if last_text else (high if match.group("step") else first)
        if first <= last:
            values.update(range(first, last + 1, step))
        else:  # a range that wraps around, as croniter reads it: 22-2 is 22, 23, 0, 1, 2
            values.update(value % (high + 1 - low) + low for value in range(first - low, last + high + 2 - low, step))
    return values


def check_cron(expression: str) -> None:
    """Raise :class:`CronError` unless ``expression`` is a five-field cron expression Dagster accepts."""
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise CronError(f"needs 5 fields (minute hour day month weekday), got {len(parts)}")
    selected = [_field_values(part, *spec) for part, spec in zip(parts, FIELDS, strict=True)]
    days, months = selected[2], selected[3]
    if months == {_FEBRUARY} and days and min(days) >= 30:
        raise CronError("30 and 31 February never come")
