"""`axe config validate` as the operator runs it (a real process): every problem on its own
line with its YAML path and what is allowed, exit 2; warnings for files that may appear later,
exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "axe_pipelines.cli", "--config", str(path),
                           "config", "validate"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DAGSTER_HOME": str(path.parent / "home")})


BAD = """\
axe:
  servers:
    frame-postgres: {host: 127.0.0.1}
  databases:
    frame: {server: frame-postgres, dbname: "host=elsewhere dbname=frame"}
    frame: {server: frame-postgres}
  folders:
    files: {path: .local/files}
  tiers:
    local: {repository: /srv/axe/local, password: {env: AXE_PW}, schedule: "0 3 * * mon-fry"}
    cold: {password: {env: AXE_COLD_PW}, repo_subdir: ".."}
    ring: {peers: [realchoise]}
realchoice:
  ring_backup: {ssh_user: realchoice, ssh_fqdn: "-oProxyCommand=sh", ssh_ip: realchoice,
                receive_dir_at_peer: /peer/, receive_dir_at_self: /srv/in}
timezone: Asia/Seoul
"""


def test_validate_names_each_problem_by_path_with_what_is_allowed_and_exits_2(tmp_path):
    path = tmp_path / "customers.yaml"
    path.write_text(BAD)
    proc = validate(path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # Duplicate keys come first: the rest would be judged on data YAML already changed.
    assert proc.stderr.splitlines() == [
        f"axe: {path}: 1 problem(s):",
        "  - axe.databases.frame: key given twice (lines 5 and 6); YAML would silently keep "
        "only the last one: keep one"]

    path.write_text(BAD.replace("    frame: {server: frame-postgres}\n", ""))
    proc = validate(path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0] == f"axe: {path}: 7 problem(s):"
    found = {ln.split(": ", 1)[0].removeprefix("  - "): ln for ln in lines[1:]}
    assert "would be read by libpq as a connection string" in found["axe.databases.frame.dbname"]
    assert "relative path; give an absolute path" in found["axe.folders.files.path"]
    assert "(numbers 0-7; names: sun-sat)" in found["axe.tiers.local.schedule"]
    assert "must be one folder name inside the volume" in found["axe.tiers.cold.repo_subdir"]
    assert "is not a host name or IP address" in found["realchoice.ring_backup.ssh_fqdn"]
    assert "is not an IP address" in found["realchoice.ring_backup.ssh_ip"]
    assert "unknown customer setting or misspelled key" in found["timezone"]


def test_validate_reports_unknown_peers_once_every_field_is_good(tmp_path):
    path = tmp_path / "customers.yaml"
    path.write_text(textwrap.dedent("""\
        axe:
          tiers:
            local: {repository: /srv/axe/local, password: {env: AXE_PW}}
            ring: {peers: [realchoise]}
        realchoice:
          ring_backup: {ssh_user: realchoice, ssh_fqdn: realchoice.invalid,
                        receive_dir_at_peer: /peer/, receive_dir_at_self: /srv/in}
        """))
    proc = validate(path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[1] == ("  - axe.tiers.ring.peers: unknown peer(s) "
                                           "'realchoise' (ring peers: realchoice)")


def test_validate_warns_about_files_that_are_not_there_yet_and_exits_0(tmp_path):
    path = tmp_path / "customers.yaml"
    path.write_text(textwrap.dedent(f"""\
        axe:
          folders:
            files: {{path: /srv/files, excludes_file: {tmp_path}/excludes}}
          tiers:
            local: {{repository: /srv/axe/local, password: {{file: {tmp_path}}}}}
        """))
    proc = validate(path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{path}: valid (1 customer(s) backed up: axe; ring peers: -)",
        f"warn axe.folders.files.excludes_file: excludes file {tmp_path}/excludes does not "
        f"exist (yet); the tier using it fails until it does",
        f"warn axe.tiers.local.password.file: password file {tmp_path} is a directory, not a "
        f"file"]
