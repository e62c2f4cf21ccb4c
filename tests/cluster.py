"""A real single-node Kubernetes control plane for the ``k8s`` tests, on 127.0.0.1.

The binaries are built from their Go modules by ``make cluster``
(``config/kubernetes/cluster/build.sh``) into a cache outside the repository. This module
starts them for a test session, each on free loopback ports, with their state in a temporary
folder, and stops them all at the end:

- etcd;
- kube-apiserver with RBAC (``--authorization-mode=Node,RBAC``) and the PodSecurity admission
  (on by default), the ServiceAccount admission and token controller, static bearer tokens for
  the test identities (``admin`` in ``system:masters``; others have no rights but what RBAC
  grants them);
- kube-controller-manager (service-account tokens, namespaces, garbage collection, Jobs);
- kube-scheduler;
- kwok, managing one fake node (``datalabs-node``): pods scheduled to it are reported running,
  with no container really started (the floor of the Kubernetes issue; a real kubelet is the aim).

``Cluster.kubeconfig(user)`` writes a kubeconfig for one of the identities, for KubeSpawner and
kubernetes_asyncio alike.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import free_port

#: Where ``make cluster`` puts the binaries (``config/kubernetes/cluster/build.sh``).
BIN_DIR = Path(os.environ.get("DATALABS_CLUSTER_BIN", "/var/cache/datalabs-cluster/bin"))
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "helm")
NODE_NAME = "datalabs-node"
#: What the fake node does with nodes and pods (kwok's "stages").
STAGES = Path(__file__).resolve().parents[1] / "config/kubernetes/cluster/kwok-stages.yaml"
#: Identities with a static token; only ``admin`` has rights of its own (system:masters).
USERS = {
    "admin": ("system:masters",),
    "datalabs-hub": (),
    "mallory": (),
    # the real kubelet node of tests/kubelet_node.py (the Node authorizer knows it by this name)
    "system:node:datalabs-kubelet": ("system:nodes",),
    # the NetworkPolicy agent beside that node (tests/kubelet_node.py); RBAC gives it its rights
    "kube-network-policies": (),
}


class ClusterMissing(RuntimeError):
    """A binary of the test cluster is not built."""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if not os.access(BIN_DIR / b, os.X_OK)]


def _write_pki(folder: Path) -> dict[str, Path]:
    """A CA, the API server's serving certificate and the service-account signing key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def pem_key(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "datalabs-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    names = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # how the API server proves itself to a real kubelet (logs, exec): a client certificate
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client")])
        )
        .issuer_name(ca_name)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "kubelet-client.crt": client.public_bytes(serialization.Encoding.PEM),
        "kubelet-client.key": pem_key(client_key),
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "apiserver.crt": cert.public_bytes(serialization.Encoding.PEM),
        "apiserver.key": pem_key(key),
        "sa.key": pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    out = {}
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        path.chmod(0o600)
        out[name] = path
    return out


@dataclass
class Cluster:
    """A running control plane; see the module docstring."""

    root: Path
    api_url: str
    ca: Path
    tokens: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def kubeconfig(self, user: str = "admin", namespace: str = "default", token: str = "") -> Path:
        """A kubeconfig file for ``user`` (a key of :data:`USERS`), or for a bare ``token``
        (e.g. a service account's) under the name ``user``."""
        path = self.root / f"kubeconfig-{user}-{namespace}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "datalabs-test",
                    "cluster": {"server": self.api_url, "certificate-authority": str(self.ca)},
                }
            ],
            "users": [{"name": user, "user": {"token": token or self.tokens[user]}}],
            "contexts": [
                {
                    "name": "test",
                    "context": {"cluster": "datalabs-test", "user": user, "namespace": namespace},
                }
            ],
            "current-context": "test",
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def request(
        self, method: str, path: str, body: Any = None, user: str = "admin", token: str = ""
    ) -> tuple[int, Any]:
        """One API call as ``user`` (or with a bare ``token``): ``(status, decoded body)``."""
        headers = {"Authorization": f"Bearer {token or self.tokens[user]}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = (
                "application/merge-patch+json" if method == "PATCH" else "application/json"
            )
        req = urllib.request.Request(self.api_url + path, data, headers, method=method)
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(req, context=context, timeout=30) as resp:
                return resp.status, _decoded(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, _decoded(e.read())

    def apply(self, obj: dict[str, Any], user: str = "admin") -> dict[str, Any]:
        """Create ``obj`` (a whole manifest); raise with the server's message if refused."""
        status, answer = self.request("POST", collection_path(obj), obj, user=user)
        if status >= 300:
            raise RuntimeError(f"{obj['kind']} {obj['metadata']['name']}: {status} {answer}")
        return answer

    def grant(
        self, namespace: str, role: str, rules: list[dict[str, Any]], user: str = "datalabs-hub"
    ) -> None:
        """A Role ``role`` with ``rules`` in ``namespace``, bound to ``user`` (the hub's
        identity by default), as the chart's Roles and RoleBindings are."""
        group = "rbac.authorization.k8s.io"
        meta = {"name": role, "namespace": namespace}
        self.apply({"apiVersion": f"{group}/v1", "kind": "Role", "metadata": meta, "rules": rules})
        self.apply(
            {
                "apiVersion": f"{group}/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": group, "kind": "Role", "name": role},
                "subjects": [{"kind": "User", "name": user}],
            }
        )

    def bound_volume(
        self,
        namespace: str,
        claim: str,
        mode: str = "ReadOnlyMany",
        path: str = "/srv/archive",
        make_claim: bool = True,
    ) -> None:
        """A PersistentVolume (a host folder) reserved for claim ``claim`` of ``namespace``,
        and the claim itself unless ``make_claim`` is false (a chart makes its own). No
        provisioner runs here, so this is how a claim gets bound."""
        volume = f"{namespace}-{claim}"
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": volume},
                "spec": {
                    "capacity": {"storage": "1Ti"},
                    "accessModes": [mode],
                    "storageClassName": "",
                    "hostPath": {"path": path},
                    "claimRef": {"namespace": namespace, "name": claim},
                },
            }
        )
        if make_claim:
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": namespace},
                    "spec": {
                        "accessModes": [mode],
                        "storageClassName": "",
                        "volumeName": volume,
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            )

    def service_account_token(self, namespace: str, account: str) -> str:
        """A short-lived token of a service account, as a pod of that account would get.

        A namespace's ``default`` account is made by the controller-manager a moment after the
        namespace: wait for the account before asking (CI once asked first and got a 404)."""
        self.wait_for(
            f"service account {namespace}/{account}",
            lambda: (
                self.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}")[0]
                == 200
            ),
        )
        status, answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        if status != 201:
            raise RuntimeError(f"token of {namespace}/{account}: {status} {answer}")
        return answer["status"]["token"]

    def wait_for(self, what: str, check, timeout: float = 60) -> Any:
        """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(0.2)
        raise TimeoutError(f"{what}: not within {timeout} s (last: {last!r})")

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _decoded(raw: bytes) -> Any:
    """A JSON answer decoded; anything else (``/readyz`` answers ``ok``) as text."""
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode(errors="replace")


def collection_path(obj: dict[str, Any]) -> str:
    """The REST collection ``obj`` is created in (core and named groups, namespaced or not)."""
    api = obj["apiVersion"]
    base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    plural = {
        "Pod": "pods",
        "Namespace": "namespaces",
        "Node": "nodes",
        "ServiceAccount": "serviceaccounts",
        "Secret": "secrets",
        "ConfigMap": "configmaps",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
        "PersistentVolume": "persistentvolumes",
        "PersistentVolumeClaim": "persistentvolumeclaims",
        "Job": "jobs",
        "NetworkPolicy": "networkpolicies",
        "Service": "services",
    }[obj["kind"]]
    namespace = obj["metadata"].get("namespace")
    if namespace and obj["kind"] not in (
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
    ):
        return f"{base}/namespaces/{namespace}/{plural}"
    return f"{base}/{plural}"


def _start(cluster: Cluster, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    log = open(cluster.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    cluster.processes[name] = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=None if env is None else {**os.environ, **env},
    )
    log.close()


def _log_tail(cluster: Cluster, name: str, lines: int = 30) -> str:
    path = cluster.root / f"{name}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _alive_or_raise(cluster: Cluster) -> None:
    for name, proc in cluster.processes.items():
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited ({proc.returncode}); its log ends:\n{_log_tail(cluster, name)}"
            )


@contextlib.contextmanager
def running_cluster(
    root: Path, kubelet: bool = False, images: tuple[str, ...] = ()
) -> Iterator[Cluster]:
    """Start the control plane and the fake node in ``root``; stop everything on exit.

    With ``kubelet``, also a real node (tests/kubelet_node.py: kubelet, containerd, runc) with
    ``images`` of ``make images`` loaded."""
    missing = missing_binaries()
    if missing:
        raise ClusterMissing(
            f"The test cluster's binaries {', '.join(missing)} are not in {BIN_DIR}: "
            "run `make cluster` (it builds them from their Go modules)."
        )
    root.mkdir(parents=True, exist_ok=True)
    pki = _write_pki(root)
    tokens = {user: os.urandom(16).hex() for user in USERS}
    with open(root / "tokens.csv", "w") as f:
        for i, (user, groups) in enumerate(USERS.items()):
            group_field = f',"{",".join(groups)}"' if groups else ""
            f.write(f"{tokens[user]},{user},uid-{i}{group_field}\n")
    (root / "tokens.csv").chmod(0o600)
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    cluster = Cluster(root, f"https://127.0.0.1:{api_port}", pki["ca.crt"], tokens)
    try:
        _start(
            cluster,
            "etcd",
            [
                str(BIN_DIR / "etcd"),
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                # a test cluster's state is thrown away: fsync only slows it down
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        _start(
            cluster,
            "kube-apiserver",
            [
                str(BIN_DIR / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki['apiserver.crt']}",
                f"--tls-private-key-file={pki['apiserver.key']}",
                f"--client-ca-file={pki['ca.crt']}",
                f"--token-auth-file={root / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki['sa.pub']}",
                f"--service-account-signing-key-file={pki['sa.key']}",
                "--service-cluster-ip-range=10.96.0.0/16",
                # no Endpoints for the API server's own Service: 127.0.0.1 is not a valid one
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--anonymous-auth=false",
                f"--kubelet-client-certificate={pki['kubelet-client.crt']}",
                f"--kubelet-client-key={pki['kubelet-client.key']}",
                # a node's name is not in any DNS here; its InternalIP is how to reach it
                "--kubelet-preferred-address-types=InternalIP",
            ],
        )

        def api_ready():
            _alive_or_raise(cluster)
            try:
                status, _ = cluster.request("GET", "/readyz")
            except OSError:
                return False
            return status == 200

        cluster.wait_for("kube-apiserver /readyz", api_ready, timeout=120)
        admin_config = cluster.kubeconfig("admin")
        _start(
            cluster,
            "kube-controller-manager",
            [
                str(BIN_DIR / "kube-controller-manager"),
                f"--kubeconfig={admin_config}",
                f"--service-account-private-key-file={pki['sa.key']}",
                f"--root-ca-file={pki['ca.crt']}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--controllers=*",
            ],
        )
        _start(
            cluster,
            "kube-scheduler",
            [
                str(BIN_DIR / "kube-scheduler"),
                f"--kubeconfig={admin_config}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
        )
        _start(
            cluster,
            "kwok",
            [
                str(BIN_DIR / "kwok"),
                f"--kubeconfig={admin_config}",
                f"--config={STAGES}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                "--cidr=10.244.0.0/16",
                f"--server-address=127.0.0.1:{free_port()}",
                "--node-lease-duration-seconds=40",
            ],
        )
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": NODE_NAME,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"kubernetes.io/hostname": NODE_NAME, "type": "kwok"},
                },
                "status": {
                    "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                    "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                },
            }
        )

        def node_ready():
            _alive_or_raise(cluster)
            status, node = cluster.request("GET", f"/api/v1/nodes/{NODE_NAME}")
            conditions = (node.get("status") or {}).get("conditions") or [] if status == 200 else []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        cluster.wait_for(f"node {NODE_NAME} Ready (kwok)", node_ready, timeout=60)

        def default_account():
            _alive_or_raise(cluster)
            status, _ = cluster.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return status == 200

        cluster.wait_for("the default service account", default_account, timeout=60)
        if kubelet:
            from tests.kubelet_node import running_kubelet_node

            with running_kubelet_node(cluster, images):
                yield cluster
        else:
            yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root / "etcd", ignore_errors=True)
