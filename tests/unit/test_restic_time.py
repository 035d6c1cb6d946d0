"""restic reads --time as wall-clock time in its own TZ: axe hands it the time in that zone."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from axe_pipelines.restic.client import Restic
from axe_pipelines.restic.model import Repository
from axe_pipelines.secrets import EnvSource


def _restic(timezone: str | None) -> Restic:
    repo = Repository(location="/nonexistent", password=EnvSource(env="X"), label="tier A")
    return Restic(repo, binary="/bin/true", timezone=timezone)


def test_an_aware_utc_time_is_given_in_the_tiers_zone() -> None:
    args = _restic("Asia/Seoul")._common(["a"], datetime(2026, 5, 19, 18, 0, tzinfo=UTC))
    assert args[args.index("--time") + 1] == "2026-05-20 03:00:00"


def test_a_time_already_in_the_zone_is_unchanged() -> None:
    at = datetime(2026, 5, 20, 3, 0, tzinfo=ZoneInfo("Asia/Seoul"))
    args = _restic("Asia/Seoul")._common(["a"], at)
    assert args[args.index("--time") + 1] == "2026-05-20 03:00:00"
