"""When things run: the five-field cron expressions and IANA time zones customers.yaml uses,
checked when the file is read (pydantic validators), so a bad schedule is a config error
naming its field, not a schedule that never fires."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def check_timezone(value: str) -> str:
    """Given a zone name, return it when it is an IANA zone (Asia/Seoul). Raise ValueError
    saying what to use otherwise."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Asia/Seoul)") from None
    return value


_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))
# The names cron (and Dagster's croniter) accept for months and weekdays, in any case.
_NAMES = {"month": {m: i + 1 for i, m in enumerate(
              "jan feb mar apr may jun jul aug sep oct nov dec".split())},
          "day of week": {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}}


def _number(text: str, what: str) -> int | None:
    """A cron bound as a number (a month or weekday name too), None when it is neither."""
    if text.isdigit():
        return int(text)
    return _NAMES.get(what, {}).get(text.lower())


def check_cron(value: str) -> str:
    """Given a cron expression, return it when it has five fields (minute hour day month
    weekday) of numbers in range (month and weekday names like jan or mon-fri too), `*`,
    ranges, lists and steps. Raise ValueError naming the field and the part it cannot read
    otherwise."""
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"cron {value!r} must have 5 fields (minute hour day month weekday)")
    for text, (what, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise ValueError(f"cron {value!r}: bad step {step!r} in the {what} field")
            if base == "*":
                continue
            bounds = [_number(b, what) for b in base.split("-")]
            if len(bounds) > 2 or None in bounds:
                names = {"month": "; names: jan-dec", "day of week": "; names: sun-sat"}
                raise ValueError(f"cron {value!r}: cannot read {part!r} in the {what} field "
                                 f"(numbers {low}-{high}{names.get(what, '')})")
            if any(not low <= b <= high for b in bounds if b is not None):
                raise ValueError(f"cron {value!r}: {part!r} is outside {low}-{high} ({what})")
    return value
