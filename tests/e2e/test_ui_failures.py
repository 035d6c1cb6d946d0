"""What the run's page leads with when tier B fails: the operator's one line ("tier B: cannot
reach realchoice ..."), not Dagster's "Exceeded max_retries of N" with the reason under
"caused by". The nightly job's retries still happen; the last attempt fails with the reason as
its headline and the details as metadata. A real peer address where nothing listens."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import yaml

from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.config import load_config
from axe_pipelines.definitions import build_definitions
from axe_pipelines.names import tier_b_job
from axe_pipelines.postgres.cluster import free_port
from tests.conftest import REPO_PASSWORD_ENV


def _site(root: Path) -> Path:
    (root / "files").mkdir()
    (root / "files" / "a.txt").write_text("contract\n" * 100)
    data = {
        "axe": {"folders": {"files": {"path": str(root / "files")}},
                "tiers": {"local": {"repository": str(root / "repo"),
                                    "password": {"env": REPO_PASSWORD_ENV}},
                          "ring": {"retries": 2, "retry_delay_s": 0.1,
                                   "password": {"env": REPO_PASSWORD_ENV}}}},
        # Loopback, a port where nothing listens: ssh is refused at once, as by a peer
        # whose sshd is down.
        "realchoice": {"ring_backup": {
            "ssh_user": "realchoice", "ssh_fqdn": "realchoice.invalid", "ssh_ip": "127.0.0.1",
            "ssh_port": free_port(), "receive_dir_at_peer": "/srv/peer-backups/axe/",
            "receive_dir_at_self": str(root / "peer" / "realchoice")}},
    }
    path = root / "customers.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_failed_push_leads_with_the_reason_after_its_retries(tmp_path: Path, dagster_home):
    site = load_config(_site(tmp_path))
    customer = site.customer("axe")
    local_restic("axe", customer).init()
    run_tier_a("axe", customer, at=datetime.now(UTC).replace(microsecond=0), run_id="night-1")
    job = build_definitions(site).resolve_job_def(tier_b_job("axe"))  # the nightly job
    result = job.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)
    assert not result.success
    events = result.all_events
    assert sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in events) == 2
    [failure] = [e for e in events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data
    headline = data.error.message.strip().splitlines()[0]
    assert "Exceeded max_retries" not in data.error.message
    assert headline.removeprefix("dagster._core.definitions.events.Failure: ").startswith(
        "tier B: cannot reach realchoice")
    assert data.user_failure_data.description.startswith("tier B: cannot reach realchoice")
    meta = {k: v.value for k, v in data.user_failure_data.metadata.items()}
    assert meta["attempt"] == 3 and meta["attempts_allowed"] == 3
    assert meta["ssh_exit"] == 255 and meta["retryable"] is True
    # The run's own failure (the Runs page) names the step; its log holds the reason first.
    record = dg.DagsterInstance.get().get_run_by_id(result.run_id)
    assert record.status == dg.DagsterRunStatus.FAILURE
