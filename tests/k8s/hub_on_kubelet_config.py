"""JupyterHub config of tests/k8s/test_kubelet_node.py: DatalabsKubeSpawner on the real node.

The test passes its values in ``DATALABS_TEST_HUB`` (JSON); with ``"sidecar": true``
(tests/k8s/test_sidecar_on_kubelet.py) the pods get the rclone sidecar and bob may log in
too; with ``"credentials_master_key"`` and ``"connection_allowed_networks"`` sessions offer
connections, to those networks only; with ``"runs"`` (tests/k8s/test_pipelines_panel_on_kubelet.py)
the hub serves the run broker as the chart configures it and sessions run pipelines on the
cluster. The hub serves the broker in all. The hub's API listens on the node's bridge address
(local to this machine) because the user pods call it from the pod network; the proxy and the
hub's public side stay on 127.0.0.1.
"""

import json
import os

from datalabs_spawner.broker import default_handlers as broker_handlers
from datalabs_spawner.run_broker import default_handlers as run_handlers

c = get_config()  # noqa: F821 - JupyterHub's config loader provides it
e = json.loads(os.environ["DATALABS_TEST_HUB"])

c.JupyterHub.bind_url = f"http://127.0.0.1:{e['port']}"
c.JupyterHub.hub_bind_url = f"http://{e['node_ip']}:{e['hub_port']}"
c.JupyterHub.hub_connect_url = f"http://{e['node_ip']}:{e['hub_port']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{e['proxy_api_port']}"
c.ConfigurableHTTPProxy.pid_file = os.path.join(e["state"], "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{os.path.join(e['state'], 'jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = os.path.join(e["state"], "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {"alice"}
c.JupyterHub.services = [{"name": "datalabs-admin", "api_token": e["token"]}]
c.JupyterHub.load_roles = [{"name": "admin", "services": ["datalabs-admin"]}]

c.JupyterHub.spawner_class = "datalabs"
c.DatalabsKubeSpawner.namespace = e["namespace"]
c.DatalabsKubeSpawner.catalogue_dirs = [e["catalogue"]]
c.DatalabsKubeSpawner.catalogue_refresh_seconds = 0
c.DatalabsKubeSpawner.archive_claim = "datalabs-archive"
c.DatalabsKubeSpawner.image_pull_policy = "Never"
# The session's own catalogue: the ConfigMap the test made as the chart does, with the chart's
# item list (hub-config.yaml); the spawner mounts it (session_catalogue_configmap's default).
c.DatalabsKubeSpawner.session_catalogue_items = e.get("catalogue_items", [])
# The broker, as in the chart: sessions ask it which volumes alice may read.
c.JupyterHub.extra_handlers = broker_handlers
if e.get("sidecar"):
    # The namespace enforces "privileged" (warns and audits "restricted"), as the chart's
    # session namespace does; hot attach goes through the broker to the pod's sidecar.
    c.DatalabsKubeSpawner.rclone_sidecar = True
    c.Authenticator.allowed_users = {"alice", "bob"}
    # Connections as an operator enables them: a master key, and exactly the private
    # address of the storage the sessions may reach (here the node's bridge, where the
    # test's WebDAV server listens); every other private address stays refused.
    c.DatalabsKubeSpawner.credentials_master_key = e.get("credentials_master_key", "")
    c.DatalabsKubeSpawner.connection_allowed_networks = e.get("connection_allowed_networks", [])
else:
    # The namespace enforces Pod Security "restricted", which the privileged rclone sidecar
    # cannot pass (docs/kubernetes-sessions.md): this session has no connections.
    c.DatalabsKubeSpawner.rclone_sidecar = False
c.DatalabsKubeSpawner.node_selector = e["node_selector"]
c.DatalabsKubeSpawner.tolerations = e["tolerations"]
if e.get("runs"):
    runs = e["runs"]
    c.JupyterHub.extra_handlers = broker_handlers + run_handlers
    # As the chart's runs.enabled: the broker's settings, the users' folders of the work
    # claims in their sessions, and sessions whose Pipelines panel runs on the cluster.
    c.DatalabsRunBroker.namespace = e["namespace"]
    c.DatalabsRunBroker.input_dir = runs["input_dir"]
    c.DatalabsRunBroker.archive_dir = runs["archive_dir"]
    c.DatalabsRunBroker.calrissian_image_pull_policy = "Never"
    c.DatalabsRunBroker.node_selector = e["node_selector"]
    c.DatalabsRunBroker.tolerations = e["tolerations"]
    c.DatalabsRunBroker.max_ram = "1Gi"
    c.DatalabsRunBroker.max_cores = 1
    c.DatalabsRunBroker.max_time_limit = 600
    # Jobs mount the archive volumes where the sessions see them, so inputs keep their paths.
    c.DatalabsRunBroker.data_mount_root = "/home/jovyan/data"
    c.DatalabsKubeSpawner.data_mount_root = "/home/jovyan/data"
    c.DatalabsKubeSpawner.run_work_claims = True
c.DatalabsKubeSpawner.start_timeout = 180
c.DatalabsKubeSpawner.http_timeout = 120
