"""A CLI-only home made by an older axe (an older copy of the embedded dagster.yaml) does not
make doctor expect a daemon; a deployment's dagster.yaml does."""

from pathlib import Path

from axe_pipelines.checks.history import _daemon_expected
from axe_pipelines.instance import EMBEDDED


class _NoBeats:
    def get_daemon_heartbeats(self) -> dict:
        return {}


def test_an_older_embedded_default_is_still_cli_only(tmp_path: Path) -> None:
    older = EMBEDDED.read_text().splitlines()[:3] + ["run_monitoring: {enabled: false}"]
    (tmp_path / "dagster.yaml").write_text("\n".join(older) + "\n")
    assert _daemon_expected(_NoBeats(), tmp_path) == ""


def test_a_deployments_instance_expects_a_daemon(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text("storage:\n  postgres: {}\n")
    assert "not axe's embedded default" in _daemon_expected(_NoBeats(), tmp_path)
