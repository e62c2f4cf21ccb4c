"""A real node for the test cluster: kubelet with Debian's containerd and runc (``k8s`` tests).

``running_kubelet_node(cluster)`` adds one node, ``datalabs-kubelet``, to a control plane of
tests/cluster.py, next to the kwok node, and runs pods on it for real:

- containerd (Debian's package) with its own config, root, state and socket under the cluster's
  folder, the CRI plugin's sandbox image being the ``pause`` image of ``make images``;
- runc, and the CNI ``bridge`` plugin (Debian's containernetworking-plugins) on a bridge and a
  /24 of 10.88.0.0/16 made for this run, without masquerading or default route: pods reach the
  host and each other, nothing else;
- Services for the node's pods, in place of kube-proxy (which is not run: its chains are
  host-wide, every test cluster here uses 10.96.0.0/16, and several test runs share this
  machine). Pods route the whole Service range, 10.96.0.0/16, to the bridge (the CNI config).
  There, everything is restricted to this run's bridge (``-i``/``-o <bridge>``):

  - the ``kubernetes`` Service, 10.96.0.1:443 (in the API server's certificate, and what kubelet
    gives pods as ``KUBERNETES_SERVICE_HOST``), goes by a DNAT rule to a relay on the node's
    address (on port 443 where free, so NetworkPolicies allowing egress to the API server on
    443 allow it) that connects to the API server on 127.0.0.1: a pod with a service account
    token (the chart's hub, Calrissian) reaches the API with in-cluster configuration;
  - every other Service: :class:`ServiceRouter`, a thread of the test process, reads all
    Services and EndpointSlices every half second and rewrites, in one ``iptables-restore``
    transaction, a nat chain ``DLSVC-<bridge>`` (jumped to from PREROUTING for the Service
    range) with one DNAT rule per ClusterIP, port and ready endpoint on this node, chosen at
    random among several as kube-proxy's iptables mode does; ``DLSVH-<bridge>`` (POSTROUTING)
    masquerades a pod that reaches itself through its own Service (hairpin), and the filter
    chain ``DLSVR-<bridge>`` (first in FORWARD) refuses a Service address that no rule sent on
    (no ready endpoint) with a reset, instead of the host routing it on. Replies between pods of
    the bridge are un-NATed because ``br_netfilter`` is on (``bridge-nf-call-iptables``; checked,
    not set, since it is host-wide). What it does not do: NodePorts, LoadBalancers,
    ExternalIPs, session affinity, Services for the host's own connections (the host reaches pod
    addresses directly), topology; and it follows changes within half a second, not at once.
- the images of ``make images`` (config/images/build.py) imported with ``ctr images import``;
  there is no registry, pods use ``imagePullPolicy: Never``;
- the kubelet built by ``make cluster``, with the cgroupfs driver and ``failCgroupV1: false``
  (this kernel has cgroup v1 and PID 1 is not systemd), swap allowed, its root folder, pod
  logs, plugin folders and a cgroup root of its own (its root folder a shared mount, for
  Bidirectional mount propagation); it serves on 127.0.0.1 and accepts only
  the API server (client certificate of the cluster's CA), so pod logs and exec go through the
  API.

With ``network_policies``, the NetworkPolicy agent ``kube-network-policies`` (built by ``make
cluster`` from ``sigs.k8s.io/kube-network-policies`` v0.8.0) runs beside the kubelet and decides,
for the first packet of each new connection of the node's pods, whether the NetworkPolicies
allow it. The agent gets these packets from an nfqueue. Upstream it fills that queue with
nftables rules of its own (``queue`` expressions in its table ``inet kube-network-policies``),
but this kernel is built without ``CONFIG_NFT_QUEUE``: its batch is refused (``netlink receive:
no such file or directory``) and no table is made (v0.7.0 does the same). The kernel has the
xtables ``NFQUEUE`` target, so this module queues instead, with iptables (nf_tables backend)
rules in a chain of its own (``DLNP-<bridge>``): connections from the node's /24 (forwarded to
another pod, or to the host itself) and to it, not yet established, go to the agent's queue (a
number of this run). Pod-to-pod traffic on the bridge passes FORWARD because ``br_netfilter`` is
on (``bridge-nf-call-iptables``). Traffic the host starts (kubelet probes, the API server's
logs and exec) passes neither hook and is not queued, as upstream exempts it. v0.8.0 reads its
API credentials only as a pod would (``rest.InClusterConfig``): it runs in a mount namespace of
its own where a folder of this run is bound on ``/var/run/secrets/kubernetes.io/serviceaccount``,
with a token of the user ``kube-network-policies`` that may only list and watch pods, namespaces
and NetworkPolicies (its upstream ClusterRole). On exit the rules go first, then the agent.

The node is tainted ``datalabs.test/kubelet=real:NoSchedule``: pods land on it only when they
tolerate that and select it (:func:`on_kubelet_node`), so tests written for kwok's node keep
their pods there.

On exit the Service rules and chains go first, then every pod on the node is deleted and its
containers stopped, then kubelet and containerd stop, leftover containers are killed, mounts
under the node's folder and the pods' network namespaces are removed, the bridge and the cgroups
are deleted, and the kernel settings the kubelet changes (``vm.overcommit_memory``,
``kernel.panic``, ``kernel.panic_on_oops``) are put back.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import os
import random
import shutil
import signal
import socket as socketlib
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.cluster import BIN_DIR, Cluster, _alive_or_raise, _log_tail, _start
from tests.helpers import free_port

KUBELET_NODE = "datalabs-kubelet"
#: The NetworkPolicy agent's binary in BIN_DIR, and its identity (tests/cluster.py USERS).
NETPOL_AGENT = "kube-network-policies"

TAINT = {"key": "datalabs.test/kubelet", "value": "real", "effect": "NoSchedule"}
CNI_BIN = Path("/usr/lib/cni")
REPO = Path(__file__).resolve().parents[1]
#: The sysctls kubelet sets when ``protectKernelDefaults`` is false; restored on exit.
KERNEL_TUNABLES = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
CGROUP = Path("/sys/fs/cgroup")
NETNS = Path("/var/run/netns")
#: The ``kubernetes`` service's address: the first of the API server's
#: ``--service-cluster-ip-range`` (tests/cluster.py), and in its certificate.
KUBERNETES_SERVICE = ("10.96.0.1", 443)
#: The API server's ``--service-cluster-ip-range`` (tests/cluster.py): every ClusterIP is in it,
#: and pods route it to the bridge (the node), where :class:`ServiceRouter` sends it on.
SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/16")
#: How often :class:`ServiceRouter` reads the Services and EndpointSlices (seconds).
SERVICE_SYNC_PERIOD = 0.5


class _Relay:
    """A TCP relay on ``host`` (a free port) to ``target``, in threads; :meth:`close` ends it
    and every connection it made."""

    def __init__(self, host: str, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        try:
            self.listener = socketlib.create_server((host, port))
        except OSError:  # taken: any free port does, the DNAT rule names it
            self.listener = socketlib.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socketlib.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="api-relay").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socketlib.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socketlib.socket, dst: socketlib.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socketlib.SHUT_WR)

    def close(self) -> None:
        # shutdown wakes the accepting thread (close alone does not on Linux)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socketlib.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.close()


class NodeMissing(RuntimeError):
    """Something the real node needs is not installed or not built."""


def _image_builder():
    spec = importlib.util.spec_from_file_location("image_build", REPO / "config/images/build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def missing_parts(network_policies: bool = False) -> list[str]:
    """What is missing for the node, each with the command that provides it."""
    missing = []
    if not os.access(BIN_DIR / "kubelet", os.X_OK):
        missing.append(f"kubelet in {BIN_DIR} (make cluster)")
    if network_policies:
        if not os.access(BIN_DIR / NETPOL_AGENT, os.X_OK):
            missing.append(f"{NETPOL_AGENT} in {BIN_DIR} (make cluster)")
        for tool in ("iptables", "unshare"):
            if not shutil.which(tool):
                missing.append(f"{tool} (make system: iptables, util-linux)")
    for tool in ("containerd", "ctr", "runc"):
        if not shutil.which(tool):
            missing.append(f"{tool} (make system: Debian's containerd and runc)")
    bridged = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not bridged.exists() or bridged.read_text().strip() != "1":
        # replies between pods of the bridge pass iptables only so: un-DNAT of Service replies
        # and the NetworkPolicy queue need it
        missing.append("br_netfilter with bridge-nf-call-iptables=1 (modprobe br_netfilter)")
    if not (CNI_BIN / "bridge").exists():
        missing.append(f"{CNI_BIN}/bridge (make system: containernetworking-plugins)")
    builder = _image_builder()
    built = builder.built_archives()
    if builder.PAUSE_NAME not in built:
        missing.append("the pause image (make images)")
    if os.geteuid() != 0:
        missing.append("root (containerd and kubelet run as root)")
    return missing


def on_kubelet_node(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """``pod_spec`` placed on the real node (node selector and toleration added)."""
    selector = {**pod_spec.get("nodeSelector", {}), "kubernetes.io/hostname": KUBELET_NODE}
    return {
        **pod_spec,
        "nodeSelector": selector,
        "tolerations": [*pod_spec.get("tolerations", []), {**TAINT, "operator": "Equal"}],
    }


def kubelet_node_ip(cluster: Cluster) -> str:
    """The real node's address (its bridge's gateway address, local to this machine), which
    the node's pods reach: where tests serve what pods must call (the hub, a storage server)."""
    status, node = cluster.request("GET", f"/api/v1/nodes/{KUBELET_NODE}")
    assert status == 200, node
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.88.0.0/16 that no route of this host covers (another run's bridge)."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    used = []
    for line in routes.splitlines():
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(line.split()[0], strict=False))
    candidates = list(ipaddress.ip_network("10.88.0.0/16").subnets(new_prefix=24))
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError("no free /24 left in 10.88.0.0/16 for the pod network")


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=1))
    return path


def _containerd_config(root: Path, socket: Path, cni_conf: Path) -> Path:
    """containerd's config: own root, state and sockets; CRI with runc, cgroupfs, our CNI."""
    text = f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/{_image_builder().PAUSE_NAME}"
  # kubelet asks for negative OOM scores (-998 for sandboxes), which this machine refuses
  # (runc: "failed to update /proc/self/oom_score_adj: Permission denied"); containerd then
  # raises them to its own score
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
"""
    path = root / "containerd.toml"
    path.write_text(text)
    return path


def _kubelet_config(
    root: Path, cluster: Cluster, socket: Path, cgroup_root: str, node_ip: str
) -> Path:
    return _write_json(
        root / "kubelet-config.json",
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": node_ip,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "containerRuntimeEndpoint": f"unix://{socket}",
            # cgroup v1 and no systemd as PID 1 (FACTS.md); 1.34 refuses v1 unless told
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "cgroupRoot": cgroup_root,
            "failSwapOn": False,
            # only the API server may call the kubelet: it shows a certificate of the test CA
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(cluster.ca)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": str(root / "pod-logs"),
            "volumePluginDir": str(root / "volume-plugins"),
            "resolvConf": "",
            "registerWithTaints": [TAINT],
            "maxPods": 30,
            # the machine's disk is shared with other work: never evict or collect images for it
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "5s",
        },
    )


def _cni_config(root: Path, bridge: str, subnet: ipaddress.IPv4Network) -> Path:
    folder = root / "net.d"
    folder.mkdir()
    _write_json(
        folder / "10-datalabs.conflist",
        {
            "cniVersion": "1.0.0",
            "name": f"datalabs-{bridge}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": True,
                    # local traffic only: no NAT to the outside, no default route
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(subnet)}]],
                        # the Services' addresses (the kubernetes service's among them),
                        # through the bridge (the node), where ServiceRouter sends them on
                        "routes": [{"dst": str(SERVICE_RANGE)}],
                        "dataDir": str(root / "ipam"),
                    },
                }
            ],
        },
    )
    return folder


def service_rules(
    services: list[dict[str, Any]],
    slices: list[dict[str, Any]],
    subnet: ipaddress.IPv4Network,
    chain: str,
    hairpin: str,
) -> list[str]:
    """The ``iptables-restore`` lines (nat table, ``-A`` only) that send each Service's
    ClusterIP:port to the ready endpoints in ``subnet`` (this node's pods), chosen at random as
    kube-proxy's iptables mode does, and masquerade a pod that reaches itself through its own
    Service (``hairpin``: else its reply would come from its own address, not the Service's).
    Pure: ``services`` and ``slices`` are the API's items (v1 Services, discovery.k8s.io/v1
    EndpointSlices). Services without a ClusterIP, or without a ready endpoint here, get no
    rule (their traffic is refused in the filter table)."""
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in slices:
        if item.get("addressType") != "IPv4":
            continue
        meta = item["metadata"]
        name = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if name:
            by_service.setdefault((meta["namespace"], name), []).append(item)
    rules: list[str] = []
    endpoints_here: set[str] = set()
    for service in sorted(
        services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])
    ):
        meta, spec = service["metadata"], service["spec"]
        cluster_ip = spec.get("clusterIP") or ""
        try:
            if ipaddress.ip_address(cluster_ip) not in SERVICE_RANGE:
                continue
        except ValueError:  # "None" (headless) or none at all
            continue
        for port in spec.get("ports") or []:
            protocol = port.get("protocol", "TCP")
            if protocol not in ("TCP", "UDP"):
                continue
            targets = set()
            for item in by_service.get((meta["namespace"], meta["name"]), []):
                [target_port] = [
                    p["port"]
                    for p in item.get("ports") or [{}]
                    if p.get("name", "") == port.get("name", "")
                    and p.get("protocol", "TCP") == protocol
                ] or [None]
                if target_port is None:
                    continue
                for endpoint in item.get("endpoints") or []:
                    # a missing condition means ready (the API's rule for consumers)
                    if (endpoint.get("conditions") or {}).get("ready") is False:
                        continue
                    for address in endpoint.get("addresses") or []:
                        if ipaddress.ip_address(address) in subnet:
                            targets.add((address, target_port))
            targets_sorted = sorted(targets)
            comment = f"{meta['namespace']}/{meta['name']}:{port.get('name') or port['port']}"
            for i, (address, target_port) in enumerate(targets_sorted):
                left = len(targets_sorted) - i
                pick = (
                    f"-m statistic --mode random --probability {1 / left:.5f} " if left > 1 else ""
                )
                rules.append(
                    f"-A {chain} -d {cluster_ip}/32 -p {protocol.lower()} --dport {port['port']}"
                    f' -m comment --comment "{comment}" {pick}'
                    f"-j DNAT --to-destination {address}:{target_port}"
                )
                endpoints_here.add(address)
    for address in sorted(endpoints_here):
        rules.append(
            f"-A {hairpin} -s {address}/32 -d {address}/32 -m conntrack --ctstate DNAT"
            " -j MASQUERADE"
        )
    return rules


class ServiceRouter:
    """What kube-proxy does for Services, for this node's pods only: a thread that reads the
    Services and EndpointSlices of the API every :data:`SERVICE_SYNC_PERIOD` seconds and keeps
    the DNAT rules of this run's chains in step (see the module docstring)."""

    def __init__(self, cluster: Cluster, bridge: str, subnet: ipaddress.IPv4Network) -> None:
        self.cluster = cluster
        self.subnet = subnet
        self.chain = f"DLSVC-{bridge}"
        self.hairpin = f"DLSVH-{bridge}"
        self.reject = f"DLSVR-{bridge}"
        self.jumps = [
            ["-t", "nat", "PREROUTING", "-i", bridge, "-d", str(SERVICE_RANGE), "-j", self.chain],
            ["-t", "nat", "POSTROUTING", "-o", bridge, "-j", self.hairpin],
            # a ClusterIP without a ready endpoint here was not DNATed: refuse it at once, as
            # kube-proxy does, rather than let the host route it on (its default route)
            ["-t", "filter", "FORWARD", "-i", bridge, "-d", str(SERVICE_RANGE), "-j", self.reject],
        ]
        self.rules: list[str] | None = None
        self.error = ""
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="service-router")

    def start(self) -> None:
        iptables = ["iptables", "-w"]
        for table, chain in (("nat", self.chain), ("nat", self.hairpin), ("filter", self.reject)):
            subprocess.run([*iptables, "-t", table, "-N", chain], check=True, capture_output=True)
        subprocess.run(
            [
                *iptables,
                "-A",
                self.reject,
                "-p",
                "tcp",
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*iptables, "-A", self.reject, "-j", "REJECT"], check=True, capture_output=True
        )
        for table, flag, base, *rest in self.jumps:
            # first in its chain: before the NetworkPolicy agent's queue rules, whose verdict
            # ends the chain
            subprocess.run(
                [*iptables, table, flag, "-I", base, "1", *rest], check=True, capture_output=True
            )
        self.sync()
        self.thread.start()

    def sync(self) -> bool:
        """Read the API once and rewrite the chains if anything changed; whether it did."""
        status, services = self.cluster.request("GET", "/api/v1/services")
        status2, slices = self.cluster.request("GET", "/apis/discovery.k8s.io/v1/endpointslices")
        if status != 200 or status2 != 200:
            self.error = f"services: {status}, endpointslices: {status2}"
            return False
        rules = service_rules(
            services["items"], slices["items"], self.subnet, self.chain, self.hairpin
        )
        if rules == self.rules:
            return False
        # one transaction: the chains are flushed and refilled at once (no moment without rules)
        text = "\n".join(
            ["*nat", f":{self.chain} - [0:0]", f":{self.hairpin} - [0:0]", *rules, "COMMIT", ""]
        )
        done = subprocess.run(
            ["iptables-restore", "-w", "--noflush"], input=text, capture_output=True, text=True
        )
        if done.returncode != 0:
            self.error = f"iptables-restore: {done.stderr.strip()}\n{text}"
            return False
        self.rules = rules
        self.error = ""
        return True

    def _run(self) -> None:
        while not self.stopped.wait(SERVICE_SYNC_PERIOD):
            try:
                self.sync()
            except OSError as e:  # the API server stopping at the end of a session
                self.error = str(e)

    def stop(self) -> None:
        """Stop the thread and remove every rule and chain of this run."""
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=60)
        iptables = ["iptables", "-w"]
        for table, flag, base, *rest in self.jumps:
            subprocess.run([*iptables, table, flag, "-D", base, *rest], capture_output=True)
        for table, chain in (("nat", self.chain), ("nat", self.hairpin), ("filter", self.reject)):
            subprocess.run([*iptables, "-t", table, "-F", chain], capture_output=True)
            subprocess.run([*iptables, "-t", table, "-X", chain], capture_output=True)


def service_rules_now(cluster: Cluster) -> list[str]:
    """The Service rules the node's router has in force (for tests and failure messages)."""
    router = _routers.get(str(cluster.root))
    return list(router.rules or []) if router else []


#: The running routers, by their cluster's folder.
_routers: dict[str, ServiceRouter] = {}


def _mounts_under(folder: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].encode().decode("unicode_escape") for line in f]
    prefix = str(folder) + "/"
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _read_tunables() -> dict[str, str]:
    return {t: (Path("/proc/sys") / t).read_text().strip() for t in KERNEL_TUNABLES}


@contextlib.contextmanager
def running_kubelet_node(
    cluster: Cluster, images: tuple[str, ...] = (), network_policies: bool = False
) -> Iterator[str]:
    """Run the real node beside ``cluster``'s control plane; yields the node's name.

    ``images`` are image names (``datalabs/planetary-lab:1.0``) of ``make images`` to load into
    containerd besides the pause image. With ``network_policies`` the agent
    ``kube-network-policies`` enforces NetworkPolicies on the node's pods."""
    missing = missing_parts(network_policies)
    builder = _image_builder()
    built = builder.built_archives()
    missing += [f"image {i} (make images)" for i in images if i not in built]
    if missing:
        raise NodeMissing("The real kubelet node needs: " + "; ".join(missing))
    root = cluster.root / "node"
    root.mkdir()
    socket = root / "containerd.sock"
    bridge = f"dl{os.urandom(3).hex()}"
    subnet = _free_subnet()
    cgroup_root = f"/datalabs-{bridge}"
    tunables = _read_tunables()
    processes_before = set(cluster.processes)
    relay: _Relay | None = None
    router: ServiceRouter | None = None
    dnat: list[str] = []
    chain = f"DLNP-{bridge}"
    try:
        for hierarchy in CGROUP.iterdir():
            if hierarchy.is_dir() and not hierarchy.is_symlink():
                (hierarchy / cgroup_root.lstrip("/")).mkdir(exist_ok=True)
        # The bridge is made here rather than by the CNI plugin on the first pod: its address is
        # the node's (kubelet refuses a loopback node IP), where the API server reaches the
        # kubelet; the plugin takes the bridge as it finds it.
        node_ip = str(subnet[1])
        for argv in (
            ["ip", "link", "add", "name", bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{node_ip}/{subnet.prefixlen}", "dev", bridge],
            ["ip", "link", "set", bridge, "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        cni_conf = _cni_config(root, bridge, subnet)
        api = urlparse(cluster.api_url)
        service_ip, service_port = KUBERNETES_SERVICE
        # on the Service's own port where it is free (the node's address is this run's own):
        # a NetworkPolicy allowing egress to the API server on 443 then allows the relay too
        relay = _Relay(node_ip, (api.hostname or "127.0.0.1", api.port or 443), port=service_port)
        dnat = [
            "PREROUTING",
            "-i",
            bridge,
            "-d",
            f"{service_ip}/32",
            "-p",
            "tcp",
            "--dport",
            str(service_port),
            "-j",
            "DNAT",
            "--to-destination",
            f"{node_ip}:{relay.port}",
        ]
        subprocess.run(
            ["iptables", "-w", "-t", "nat", "-A", *dnat], check=True, capture_output=True
        )
        _start(
            cluster,
            "containerd",
            ["containerd", "--config", str(_containerd_config(root, socket, cni_conf))],
        )
        cluster.wait_for(
            "containerd's socket", lambda: _alive_or_raise(cluster) or socket.exists(), 60
        )
        builder.import_archives(
            socket, [built[builder.PAUSE_NAME], *(built[name] for name in images)]
        )
        (root / "kubelet").mkdir()
        # Bidirectional and HostToContainer volume mounts (the rclone sidecar's shared folder)
        # need the pod's volume folder on a shared mount: containerd refuses them otherwise
        # ("path ... is mounted on / but it is not a shared mount"), and / is private here.
        # The kubelet's root becomes a shared mount of its own (unmounted with the rest below).
        kubelet_root = str(root / "kubelet")
        for argv in (
            ["mount", "--bind", kubelet_root, kubelet_root],
            ["mount", "--make-rshared", kubelet_root],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        _start(
            cluster,
            "kubelet",
            [
                str(BIN_DIR / "kubelet"),
                f"--config={_kubelet_config(root, cluster, socket, cgroup_root, node_ip)}",
                f"--kubeconfig={cluster.kubeconfig(f'system:node:{KUBELET_NODE}')}",
                f"--root-dir={root / 'kubelet'}",
                f"--cert-dir={root / 'kubelet-pki'}",
                f"--hostname-override={KUBELET_NODE}",
                f"--node-ip={node_ip}",
                "--v=1",
            ],
        )

        def node_ready():
            _alive_or_raise(cluster)
            status, node = cluster.request("GET", f"/api/v1/nodes/{KUBELET_NODE}")
            conditions = (node.get("status") or {}).get("conditions") or [] if status == 200 else []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        try:
            cluster.wait_for(f"node {KUBELET_NODE} Ready (kubelet)", node_ready, timeout=120)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{node_log(cluster)}") from None
        if network_policies:
            _start_network_policy_agent(cluster, root, chain, subnet)
        # after the agent: its queue rules go first in FORWARD, the router's before them
        router = ServiceRouter(cluster, bridge, subnet)
        router.start()
        _routers[str(cluster.root)] = router
        yield KUBELET_NODE
    finally:
        if router is not None:
            _routers.pop(str(cluster.root), None)
            router.stop()
        if network_policies:
            _stop_network_policy_agent(cluster, chain, subnet)
        _stop_node(cluster, root, socket, processes_before)
        if dnat:
            subprocess.run(["iptables", "-w", "-t", "nat", "-D", *dnat], capture_output=True)
        if relay is not None:
            relay.close()
        # the bridge plugin's bridge and the cgroups made for this run
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
        for hierarchy in CGROUP.iterdir():
            folder = hierarchy / cgroup_root.lstrip("/")
            if folder.is_dir():
                for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if sub.is_dir():
                        with contextlib.suppress(OSError):
                            sub.rmdir()
                with contextlib.suppress(OSError):
                    folder.rmdir()
        for tunable, value in tunables.items():
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / tunable).write_text(value)


#: Runs the agent with a pod's view of its credentials, in a mount namespace of its own: the
#: host's /run is left alone (a tmpfs hides it from the agent only). Arguments: the folder with
#: ``token`` and ``ca.crt``, then the agent's command line.
_AS_IN_A_POD = (
    "mount -t tmpfs -o mode=0755 datalabs-netpol /run"
    " && mkdir -p /run/secrets/kubernetes.io/serviceaccount"
    ' && mount --bind "$1" /run/secrets/kubernetes.io/serviceaccount'
    ' && shift && exec "$@"'
)


def _bound_queues() -> set[int]:
    """The nfqueues a process listens on (the kernel's list)."""
    with open("/proc/net/netfilter/nfnetlink_queue") as f:
        return {int(line.split()[0]) for line in f if line.strip()}


def _queue_rules(chain: str, subnet: ipaddress.IPv4Network) -> list[list[str]]:
    """The jumps into ``chain`` (iptables arguments after ``-I``/``-D``)."""
    return [
        ["FORWARD", "-s", str(subnet), "-j", chain],
        ["FORWARD", "-d", str(subnet), "-j", chain],
        ["INPUT", "-s", str(subnet), "-j", chain],
    ]


def _start_network_policy_agent(
    cluster: Cluster, root: Path, chain: str, subnet: ipaddress.IPv4Network
) -> None:
    """Start kube-network-policies for the node and queue the node's new connections to it."""
    role = f"datalabs-test-{NETPOL_AGENT}"
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            # the agent's upstream ClusterRole (install.yaml of v0.8.0)
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["networkpolicies"],
                    "verbs": ["list", "watch"],
                },
            ],
        }
    )
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": NETPOL_AGENT}
            ],
        }
    )
    credentials = root / "netpol-serviceaccount"
    credentials.mkdir(mode=0o700)
    (credentials / "token").write_text(cluster.tokens[NETPOL_AGENT])
    shutil.copy(cluster.ca, credentials / "ca.crt")
    api = urllib.parse.urlsplit(cluster.api_url)
    # a queue of this run's own: other runs on this host may have agents of their own
    queue = random.choice(sorted(set(range(1000, 65000)) - _bound_queues()))
    _start(
        cluster,
        NETPOL_AGENT,
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _AS_IN_A_POD,
            "sh",
            str(credentials),
            str(BIN_DIR / NETPOL_AGENT),
            f"--hostname-override={KUBELET_NODE}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--nfqueue-id={queue}",
            # this kernel (6.18) has the conntrack fix the DNS workaround is for
            "--netfilter-bug-1766-fix=false",
            # each decision is logged with the pods it concerns (tests read this)
            "--v=2",
        ],
        env={"KUBERNETES_SERVICE_HOST": api.hostname, "KUBERNETES_SERVICE_PORT": str(api.port)},
    )
    cluster.wait_for(
        f"{NETPOL_AGENT} on nfqueue {queue}",
        lambda: _alive_or_raise(cluster) or queue in _bound_queues(),
        timeout=60,
    )
    iptables = ["iptables", "-w"]
    for argv in (
        [*iptables, "-N", chain],
        [
            *iptables,
            "-A",
            chain,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "RETURN",
        ],
        # no bypass: while the agent is not there, the node's new connections wait and fail
        [*iptables, "-A", chain, "-j", "NFQUEUE", "--queue-num", str(queue)],
        *([*iptables, "-I", *rule[:1], "1", *rule[1:]] for rule in _queue_rules(chain, subnet)),
    ):
        subprocess.run(argv, check=True, capture_output=True)


def _stop_network_policy_agent(cluster: Cluster, chain: str, subnet: ipaddress.IPv4Network) -> None:
    """Remove the queue rules, then stop the agent (SIGINT: the signal it cleans up on)."""
    iptables = ["iptables", "-w"]
    for rule in _queue_rules(chain, subnet):
        subprocess.run([*iptables, "-D", *rule], capture_output=True, check=False)
    subprocess.run([*iptables, "-F", chain], capture_output=True, check=False)
    subprocess.run([*iptables, "-X", chain], capture_output=True, check=False)
    proc = cluster.processes.pop(NETPOL_AGENT, None)
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            # it waits 5 s after the signal before it exits
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def agent_log(cluster: Cluster) -> str:
    """The NetworkPolicy agent's log so far (its decisions, with the pods they concern)."""
    path = cluster.root / f"{NETPOL_AGENT}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _sandbox_netns(socket: Path) -> set[Path]:
    """The network namespaces of the sandboxes this node's containerd still knows (only these
    are removed at the end: another test run's node may have its own beside them)."""
    ctr = ["ctr", "--address", str(socket), "-n", "k8s.io"]
    found = set()
    listed = subprocess.run([*ctr, "containers", "ls", "-q"], capture_output=True, text=True)
    for container in listed.stdout.split():
        info = subprocess.run([*ctr, "containers", "info", container], capture_output=True)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            for ns in json.loads(info.stdout)["Spec"]["linux"]["namespaces"]:
                if ns.get("type") == "network" and ns.get("path", "").startswith(str(NETNS)):
                    found.add(Path(ns["path"]))
    return found


def _stop_node(cluster: Cluster, root: Path, socket: Path, processes_before: set[str]) -> None:
    """Pods deleted through the API (the kubelet stops their containers and networks), then
    kubelet and containerd stopped, then whatever is left killed and unmounted."""
    kubelet = cluster.processes.get("kubelet")
    if kubelet is not None and kubelet.poll() is None:
        status, pods = cluster.request(
            "GET", f"/api/v1/pods?fieldSelector=spec.nodeName={KUBELET_NODE}"
        )
        for pod in pods.get("items", []) if status == 200 else []:
            meta = pod["metadata"]
            cluster.request(
                "DELETE",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 1},
            )

        def no_pods():
            status, pods = cluster.request(
                "GET", f"/api/v1/pods?fieldSelector=spec.nodeName={KUBELET_NODE}"
            )
            return status == 200 and not pods["items"]

        with contextlib.suppress(TimeoutError):
            cluster.wait_for(f"pods on {KUBELET_NODE} gone", no_pods, timeout=60)
    netns: set[Path] = set()
    for name in ("kubelet", "containerd"):
        proc = cluster.processes.get(name)
        if name == "containerd" and proc is not None and proc.poll() is None:
            netns = _sandbox_netns(socket)
            _kill_leftover_tasks(socket)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    # the shims of this containerd outlive it; they are found by its socket on their command line
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"containerd-shim" in cmdline[0] and str(socket).encode() in cmdline:
                os.kill(int(pid), signal.SIGKILL)
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for path in netns:
        subprocess.run(["umount", str(path)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            path.unlink()
    for name in set(cluster.processes) - processes_before:
        del cluster.processes[name]
    shutil.rmtree(root, ignore_errors=True)


def _kill_leftover_tasks(socket: Path) -> None:
    """Kill and delete every container still running in the node's containerd."""
    ctr = ["ctr", "--address", str(socket), "-n", "k8s.io"]
    tasks = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True, timeout=30)
    for task in tasks.stdout.split():
        subprocess.run([*ctr, "tasks", "kill", "-a", "-s", "SIGKILL", task], capture_output=True)
    deadline = time.monotonic() + 20
    for task in tasks.stdout.split():
        while time.monotonic() < deadline:
            done = subprocess.run([*ctr, "tasks", "delete", task], capture_output=True)
            if done.returncode == 0 or b"not found" in done.stderr:
                break
            time.sleep(0.2)


def node_log(cluster: Cluster) -> str:
    """The ends of kubelet's and containerd's logs, for failure messages."""
    return "\n".join(
        f"--- {name}\n{_log_tail(cluster, name)}" for name in ("kubelet", "containerd")
    )
