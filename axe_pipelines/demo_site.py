"""The demo's site under .demo/: two throwaway PostgreSQL servers with the sample databases,
the folder, a ring peer (a loopback sshd, demo_services.PeerSsh) that also pushes its own
backups to us, a cold SSD (a plain folder, `accept_plain_folders`), the Slack catcher for the
drill and the alerts, and the customers.yaml that ties them together. Plain: no Dagster.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from axe_pipelines.demo_services import Catcher, PeerSsh, listening, stable_port
from axe_pipelines.postgres.cluster import LocalCluster
from axe_pipelines.restic import find_restic

ZONE = "Asia/Seoul"
LAYOUT = {"frame-postgres": ["frame", "hive"], "index-postgres": ["blueprint", "index"]}
HIVE_EMPLOYEES_SQL = ("SELECT 'axec' AS tenant, COUNT(*) FROM axec.employees "
                      "UNION ALL SELECT 'axev', COUNT(*) FROM axev.employees")


@dataclass
class DemoSite:
    """The demo's world: where its config is and the servers it runs."""

    root: Path
    config: Path
    clusters: list[LocalCluster]
    peer: PeerSsh
    catcher: Catcher
    volume: Path

    def stop(self) -> None:
        """Stop every server of the demo (PostgreSQL, the peer's sshd, the Slack catcher)."""
        for cluster in self.clusters:
            cluster.stop()
        self.peer.stop()
        self.catcher.stop()


def secret_file(path: Path, nbytes: int = 18, value: str | None = None) -> Path:
    """Given a path, write a random password (or `value`) there in a 0600 file unless one is
    there already; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        path.write_text((value or secrets.token_urlsafe(nbytes)) + "\n")
        path.chmod(0o600)
    return path


def cluster_root(root: Path) -> Path:
    """Given the demo folder, return where its PostgreSQL servers keep their data: that folder,
    unless axe runs as root and a folder above it is closed to others (a checkout under
    /root): the servers then run as `postgres`, which must reach their data, so a folder of
    their own under the system temp folder (made again after a reboot)."""
    closed = [p for p in [root, *root.parents] if not p.stat().st_mode & 0o001]
    if os.geteuid() != 0 or not closed:
        return root
    home = Path(tempfile.gettempdir()) / f"axe-demo-{hashlib.sha1(bytes(root)).hexdigest()[:8]}"
    home.mkdir(exist_ok=True)
    home.chmod(0o755)
    return home


def start_clusters(root: Path, password: str, create: Callable[[LocalCluster, list[str]], None],
                   ) -> tuple[list[LocalCluster], dict, dict]:
    """Given the demo folder, the postgres password and how to fill a new cluster
    (create(cluster, names)), start both sample servers on their remembered ports; return
    (clusters, servers: entries, databases: entries)."""
    clusters, servers, databases = [], {}, {}
    for i, (server, dbs) in enumerate(LAYOUT.items()):
        folder = cluster_root(root) / f"pg-{i}"
        running = (folder / "data" / "postmaster.pid").exists()
        cluster = LocalCluster(folder, password=password,
                               port=stable_port(root / "ports" / f"pg-{i}", running))
        fresh = not (cluster.data / "PG_VERSION").exists()
        if not (running and listening(cluster.port)):
            cluster.start()
        clusters.append(cluster)
        if fresh:
            create(cluster, dbs)
        servers[server] = cluster.server_config(
            password={"file": str(root / "secrets" / "postgres.password")})
        databases.update({db: {"server": server} for db in dbs})
    databases["hive"]["integrity"] = [{"name": "employees_per_tenant", "sql": HIVE_EMPLOYEES_SQL,
                                       "expect": [["axec", 42], ["axev", 17]]}]
    databases["index"]["checksum_tables"] = ["evidence_blob"]
    return clusters, servers, databases


def peer_pushes(receive_dir: Path, password_file: Path) -> None:
    """Given our receive folder for the peer, make one push of the peer's into it: its own
    restic repository (created once, with a password only the peer knows) and one more
    snapshot — what the inbound sensor then records."""
    env = {**os.environ, "RESTIC_PASSWORD": password_file.read_text().strip()}
    env.pop("RESTIC_REPOSITORY", None)
    restic = find_restic()
    if not (receive_dir / "config").exists():
        receive_dir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([restic, "-r", str(receive_dir), "init"], env=env, check=True,
                       capture_output=True, timeout=120)
    data = receive_dir.parent / "peer-data.txt"
    data.write_text(f"realchoice's data, pushed {datetime.now(ZoneInfo(ZONE)):%Y-%m-%d %H:%M}\n")
    subprocess.run([restic, "-r", str(receive_dir), "backup", "--tag", "realchoice", str(data)],
                   env=env, check=True, capture_output=True, timeout=120)


def _this_quarter() -> str:
    now = datetime.now(ZoneInfo(ZONE))
    return f"{now.year}-Q{(now.month - 1) // 3 + 1}"


def write_folders(root: Path) -> tuple[Path, Path]:
    """Given the demo folder, write the backed-up folder (with a file the excludes skip) and
    the excludes file; return (folder, excludes)."""
    files = root / "local" / "files"
    (files / "uploads").mkdir(parents=True, exist_ok=True)
    (files / "uploads" / "contract-2026-05.txt").write_text("signed contract, page 1\n" * 200)
    (files / "cache").mkdir(exist_ok=True)
    (files / "cache" / "thumb.tmp").write_text("regenerable\n")
    excludes = root / "restic-excludes"
    excludes.write_text("*.tmp\n")
    return files, excludes


def build_site(root: Path, create: Callable[[LocalCluster, list[str]], None]) -> DemoSite:
    """Given the demo folder and how to fill a new PostgreSQL cluster, start every demo server
    (created on first use), make the peer's push, mount this quarter's cold volume (a folder)
    and write .demo/customers.yaml; return the DemoSite."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    keys = root / "secrets"
    db_pw = secret_file(keys / "postgres.password").read_text().strip()
    clusters, servers, databases = start_clusters(root, db_pw, create)
    peer = PeerSsh(root / "peer").prepare().start()
    catcher = Catcher(root / "slack").start()
    webhook = secret_file(keys / "slack.webhook", value=catcher.webhook)
    webhook.write_text(catcher.webhook + "\n")  # the catcher's port may have moved
    inbound = root / "backups" / "peer" / "realchoice"
    peer_pushes(inbound, secret_file(keys / "realchoice-own.password"))
    volume = root / "Volumes" / "axe-cold-1"
    volume.mkdir(parents=True, exist_ok=True)
    files, excludes = write_folders(root)
    slack = {"webhook": {"file": str(webhook)}}
    config = {
        "axe": {
            "timezone": ZONE, "servers": servers, "databases": databases,
            "folders": {"files": {"path": str(files), "excludes_file": str(excludes),
                                  "required": True}},
            "tiers": {
                "local": {"repository": str(root / "backups" / "local"),
                          "password": {"file": str(secret_file(keys / "tier-a.password"))}},
                "ring": {"peers": ["realchoice"], "retries": 1, "retry_delay_s": 10,
                         "password": {"file": str(secret_file(keys / "tier-b.password"))}},
                "cold": {"password": {"file": str(secret_file(keys / "cold.password"))},
                         "mount_glob": str(root / "Volumes" / "axe-cold-*"),
                         "accept_plain_folders": True,
                         # This quarter is the rotation's first: it expects volume #1.
                         "rotation_start": _this_quarter()}},
            "notify": {"slack": slack, "webserver_base_url": "http://127.0.0.1:3000"},
            "drill": {"slack": slack, "evidence_dir": str(root / "drills")},
        },
        "realchoice": {"ring_backup": peer.ring_backup(root / "peer" / "disk" / "axe",
                                                       inbound)},
    }
    path = root / "customers.yaml"
    path.write_text("# Written by the demo (scripts/demo) on every run. The ring peer realchoice "
                    "is a loopback sshd\n# (.demo/peer), the cold SSD a folder, Slack a local "
                    "catcher (.demo/slack/posts.jsonl).\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return DemoSite(root, path, clusters, peer, catcher, volume)
