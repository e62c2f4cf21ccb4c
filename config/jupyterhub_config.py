# The embedded Datalabs hub: one machine, the demo catalogue, demo users alice and bob.
#
# Run it with `make demo`, or by hand from this folder: `jupyterhub -f jupyterhub_config.py`.
# Environment variables it reads (all optional):
#   DATALABS_DEMO_PASSWORD  password of alice and bob; a random one is printed at start when unset
#   DATALABS_ADMIN_TOKEN    registers an admin API token (service "datalabs-admin") for scripts
#   DATALABS_PORT           public port (default 8000); DATALABS_IP the address (default 127.0.0.1)
#   DATALABS_HUB_PORT       the hub's internal API port (default 8081)
#   DATALABS_PROXY_API_PORT configurable-http-proxy's API port (default 8001)
#   DATALABS_STATE_DIR      where the hub keeps its database, workspaces and the demo archive
#                           (default: .demo/ in the repository)
#   DATALABS_ARCHIVE_DIR    the archive root that local volume sources are relative to
#                           (default: $DATALABS_STATE_DIR/archive, filled by `make sample-data`)
#   DATALABS_CREDENTIALS_MASTER_KEY  key protecting users' connections to their own storage
#                           (default: generated once into $DATALABS_STATE_DIR/credentials.key)
#   DATALABS_SANDBOX        1 (default when the hub runs as root): each user's server runs as their
#                           own system account in a bubblewrap sandbox; 0 turns that off
#   DATALABS_IDLE_TIMEOUT   seconds without activity after which jupyterhub-idle-culler stops a
#                           session (default 3600; 0 turns culling off). A session with a
#                           pipeline run under way is never idle. Checked every timeout/4 s
#                           (at most 300 s), the same interval sessions report activity at.
import os
import secrets
import sys
from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

here = Path(__file__).resolve().parent
state = Path(os.environ.get("DATALABS_STATE_DIR", here.parent / ".demo")).resolve()
state.mkdir(parents=True, exist_ok=True, mode=0o700)
ip = os.environ.get("DATALABS_IP", "127.0.0.1")
port = int(os.environ.get("DATALABS_PORT", "8000"))

# -- The hub -----------------------------------------------------------------------------------
c.JupyterHub.bind_url = f"http://{ip}:{port}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{int(os.environ.get('DATALABS_HUB_PORT', '8081'))}"
c.ConfigurableHTTPProxy.api_url = (
    f"http://127.0.0.1:{int(os.environ.get('DATALABS_PROXY_API_PORT', '8001'))}"
)
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
# A hub restart (an upgrade, a config change) leaves running sessions, their volumes and their
# pipeline runs alone: the restarted hub finds them from its database and routes to them again.
# Sessions found dead are cleaned up (README.md, "Hub restarts").
c.JupyterHub.cleanup_servers = False

# -- Who may log in: the demo users, one shared demo password ------------------------------
password = os.environ.get("DATALABS_DEMO_PASSWORD") or secrets.token_urlsafe(12)
if "DATALABS_DEMO_PASSWORD" not in os.environ:
    print(
        f"\n  Datalabs demo: log in at http://{ip}:{port} as alice or bob, password: {password}\n",
        file=sys.stderr,
        flush=True,
    )
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = password
c.Authenticator.allowed_users = {"alice", "bob"}
# alice is in the group that may read the restricted Rosetta volume; bob is not.
c.JupyterHub.load_groups = {"rosetta-team": {"users": ["alice"]}}

c.JupyterHub.services = []
c.JupyterHub.load_roles = []
admin_token = os.environ.get("DATALABS_ADMIN_TOKEN")
if admin_token:
    c.JupyterHub.services.append({"name": "datalabs-admin", "api_token": admin_token})
    c.JupyterHub.load_roles.append({"name": "admin", "services": ["datalabs-admin"]})

# -- Idle sessions are stopped (jupyterhub-idle-culler, a hub service) --------------------------
idle_timeout = int(os.environ.get("DATALABS_IDLE_TIMEOUT", "3600"))
if idle_timeout < 0:
    raise SystemExit(f"DATALABS_IDLE_TIMEOUT must be 0 (off) or more seconds, not {idle_timeout}")
if idle_timeout:
    # Activity must reach the hub well within the timeout: sessions report theirs (pipeline
    # runs under way included) and the hub reads the proxy's every `check` seconds.
    check = max(1, min(300, idle_timeout // 4))
    c.JupyterHub.last_activity_interval = check
    c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": str(check)}
    c.JupyterHub.services.append(
        {
            "name": "idle-culler",
            # SIGTERM when the hub dies: a hub killed by SIGKILL cannot stop its services,
            # and the restarted hub would run a second culler beside the orphan.
            "command": [
                "setpriv",
                "--pdeathsig",
                "TERM",
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={idle_timeout}",
                f"--cull-every={check}",
            ],
        }
    )
    c.JupyterHub.load_roles.append(
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }
    )

# -- The broker: the hub-side authority for volumes --------------------------------------------
# Sessions ask it (with the user's own hub token) which volumes the user may read, and ask it to
# attach and detach them; it checks the hub's own groups and the catalogue, and mounts as the
# hub. Its routes live under /hub/datalabs/v1/ (docs/api/broker.openapi.yaml). The address the
# sessions use is DatalabsSpawnerMixin.broker_url (default: the hub's internal API address).
# JupyterHub logs that extra_handlers is deprecated; see datalabs_spawner/broker.py for why the
# broker lives in the hub process all the same.
from datalabs_spawner.broker import default_handlers as broker_handlers  # noqa: E402

c.JupyterHub.extra_handlers = broker_handlers

# -- Cluster runs through the broker (docs/pipelines.md) ------------------------------------
# Only where this hub has a Kubernetes cluster to submit to: the kubeconfig of its identity, the
# namespace, and where it sees the input claim (the archive claim is the volume root here).
if os.environ.get("DATALABS_RUNS_KUBECONFIG"):
    from datalabs_spawner.run_broker import default_handlers as run_handlers

    c.JupyterHub.extra_handlers = broker_handlers + run_handlers
    c.DatalabsRunBroker.kubeconfig = os.environ["DATALABS_RUNS_KUBECONFIG"]
    c.DatalabsRunBroker.namespace = os.environ.get("DATALABS_RUNS_NAMESPACE", "default")
    c.DatalabsRunBroker.input_dir = os.environ.get(
        "DATALABS_RUNS_INPUT_DIR", str(state / "calrissian-input-data")
    )
    c.DatalabsRunBroker.archive_dir = os.environ.get("DATALABS_ARCHIVE_DIR", str(state / "archive"))

# -- Sessions: the Datalabs local spawner and the demo catalogue ----------------------------
c.JupyterHub.spawner_class = "datalabs-local"
c.DatalabsSpawnerMixin.catalogue_dirs = [str(here / "catalogue")]
c.DatalabsLocalSpawner.workspace_root = str(state / "workspaces")
# Each user's server runs as their own system account in a bubblewrap sandbox whenever the hub
# can create accounts and mounts (it runs as root); DATALABS_SANDBOX=0 turns it off.
c.DatalabsLocalSpawner.sandbox = os.environ.get(
    "DATALABS_SANDBOX", "1" if os.geteuid() == 0 else "0"
) not in ("0", "")
c.DatalabsLocalSpawner.volume_root = os.environ.get("DATALABS_ARCHIVE_DIR", str(state / "archive"))
# Example notebooks per datalab, copied into workspaces/<user>/examples/<datalab>/ at start.
c.DatalabsLocalSpawner.examples_dir = str(here / "notebooks")
# Pipeline runs: per user and on the whole machine (default: its number of cores).
c.DatalabsLocalSpawner.pipeline_runs_per_user = 2
c.DatalabsLocalSpawner.pipeline_run_slots_dir = str(state / "run-slots")
# The single-user server from this very environment, whatever PATH the hub was started with:
# jupyterhub-singleuser minus an import that was 60% of its CPU (datalabs_spawner/singleuser.py).
c.Spawner.cmd = [sys.executable, "-m", "datalabs_spawner.singleuser"]
c.Spawner.default_url = "/lab"
# Tests point JupyterLab at settings that turn off its news prompt; pass that through.
c.Spawner.env_keep = ["JUPYTERHUB_SINGLEUSER_APP", "PATH", "LANG", "JUPYTERLAB_SETTINGS_DIR"]
c.Spawner.start_timeout = 60

# -- Users' own storage (WebDAV, FTP, SFTP, S3, Dropbox, Google Drive) ------------------------
key_file = state / "credentials.key"
if not os.environ.get("DATALABS_CREDENTIALS_MASTER_KEY"):
    if not key_file.exists():
        from datalabs_volumes.credentials import new_master_key

        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_master_key())
    c.DatalabsSpawnerMixin.credentials_master_key = key_file.read_text().strip()
# Loopback is refused for connections everywhere else; the demo allows it so that a new user
# can try a connection against `rclone serve webdav` on the same machine. The hub's own ports
# stay refused on it: the hub API and the proxy API (the spawner adds these two by itself too)
# and the public port, whatever a connection's URL or its server's redirects say.
c.DatalabsSpawnerMixin.connection_allowed_networks = ["127.0.0.1/32"]
c.DatalabsSpawnerMixin.connection_refused_endpoints = [
    f"127.0.0.1:{int(os.environ.get('DATALABS_HUB_PORT', '8081'))}",
    f"127.0.0.1:{int(os.environ.get('DATALABS_PROXY_API_PORT', '8001'))}",
    f"127.0.0.1:{port}",
]
c.Spawner.http_timeout = 60
