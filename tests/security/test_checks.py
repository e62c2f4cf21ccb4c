"""The pure checks behind the security rules, one rule per test (docs/security.md)."""

from __future__ import annotations

import asyncio
import ipaddress
import runpy
import socket
from pathlib import Path

import pytest

from datalabs_pipelines.launcher import MAX_DEPTH, Workspace, _Bad, check_value
from datalabs_pipelines.references import ReferenceRefused, check_references
from datalabs_volumes.egress import EgressProxy, NetworkPolicy, parse_endpoint
from datalabs_volumes.remotes import InvalidConnection, validate

REPO = Path(__file__).resolve().parents[2]

# -- network policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",  # cloud metadata
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:100.64.0.1",
    ],
)
def test_addresses_that_are_not_global_are_refused_by_default(address):
    assert NetworkPolicy().refusal(address, 443) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert NetworkPolicy().refusal(address, 443) is None


def test_an_allowed_network_opens_only_that_network():
    policy = NetworkPolicy.from_strings(["100.64.0.0/10"])
    assert policy.refusal("100.64.3.4", 80) is None
    assert policy.refusal("10.0.0.1", 80) is not None


def test_a_refused_endpoint_wins_over_an_allowed_network():
    policy = NetworkPolicy.from_strings(["127.0.0.1/32"], ["127.0.0.1:8081", "[::1]:8001"])
    assert policy.refusal("127.0.0.1", 9000) is None
    assert "reserved for the platform" in policy.refusal("127.0.0.1", 8081)
    assert "reserved" in policy.refusal("::ffff:127.0.0.1", 8081)
    # A whole network, any port, even a public one.
    policy = NetworkPolicy.from_strings([], ["203.0.113.0/24", "8.8.8.8"])
    assert policy.refusal("8.8.8.8", 53) is not None


@pytest.mark.parametrize(
    "text, network, port",
    [
        ("127.0.0.1:8081", "127.0.0.1/32", 8081),
        ("10.0.0.0/8", "10.0.0.0/8", None),
        ("[::1]:8001", "::1/128", 8001),
        ("::1", "::1/128", None),
    ],
)
def test_endpoints_are_parsed(text, network, port):
    endpoint = parse_endpoint(text)
    assert endpoint.network == ipaddress.ip_network(network) and endpoint.port == port


@pytest.mark.parametrize("bad", ["127.0.0.1:0", "127.0.0.1:70000", "not-an-address", "1.2.3.4:x"])
def test_bad_endpoints_are_refused(bad):
    with pytest.raises(ValueError):
        parse_endpoint(bad)


def test_a_connection_to_a_reserved_port_is_refused_when_saved():
    policy = NetworkPolicy.from_strings(["127.0.0.1/32"], ["127.0.0.1:8081"])
    doc = {"name": "x", "backend": "webdav", "options": {"url": "http://127.0.0.1:8081/"}}
    with pytest.raises(InvalidConnection) as e:
        validate(doc, policy)
    assert e.value.field == "options.url"
    ftp = {"name": "y", "backend": "ftp", "options": {"host": "127.0.0.1", "port": "8081"}}
    with pytest.raises(InvalidConnection):
        validate(ftp, policy)
    doc["options"]["url"] = "http://127.0.0.1:8082/"
    validate(doc, policy)


def test_the_demo_allows_loopback_but_not_the_hubs_own_ports(tmp_path, monkeypatch):
    monkeypatch.setenv("DATALABS_STATE_DIR", str(tmp_path))
    for name in ("DATALABS_HUB_PORT", "DATALABS_PROXY_API_PORT", "DATALABS_PORT"):
        monkeypatch.delenv(name, raising=False)
    from traitlets.config import Config

    config = Config()
    runpy.run_path(str(REPO / "config" / "jupyterhub_config.py"), {"get_config": lambda: config})
    mixin = config.DatalabsSpawnerMixin
    policy = NetworkPolicy.from_strings(
        mixin.connection_allowed_networks, mixin.connection_refused_endpoints
    )
    assert policy.refusal("127.0.0.1", 18080) is None  # a user's own `rclone serve webdav`
    for port in (8081, 8001, 8000):  # hub API, proxy API, public port
        assert policy.refusal("127.0.0.1", port) is not None, port


def test_the_egress_proxy_refuses_before_connecting_and_relays_what_is_allowed():
    async def scenario() -> None:
        hits: list[bytes] = []

        async def origin(reader, writer):
            hits.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(origin, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        allowed = EgressProxy(
            NetworkPolicy.from_strings(["127.0.0.1/32"], [f"127.0.0.1:{port + 1}"])
        )
        proxy_url = await asyncio.to_thread(allowed.start)
        proxy_port = int(proxy_url.rsplit(":", 1)[1])

        async def ask(request: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            writer.write(request)
            await writer.drain()
            answer = await reader.read()
            writer.close()
            return answer

        try:
            ok = await ask(
                f"GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
            )
            assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"hello")
            assert b"connection: close" in ok.lower()
            assert hits and hits[0].startswith(b"GET /x HTTP/1.1")
            for refused in (f"127.0.0.2:{port}", f"127.0.0.1:{port + 1}", "[::1]:80"):
                answer = await ask(
                    f"CONNECT {refused} HTTP/1.1\r\nHost: {refused}\r\n\r\n".encode()
                )
                assert answer.startswith(b"HTTP/1.1 403 refused by the Datalabs network policy")
            answer = await ask(b"GET http://100.64.0.1/ HTTP/1.1\r\nHost: 100.64.0.1\r\n\r\n")
            assert b"403" in answer.split(b"\r\n")[0]
            assert len(hits) == 1
        finally:
            await asyncio.to_thread(allowed.stop)
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


# -- launcher ----------------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.csv").write_text("x\n")
    (root / "a.csv.idx").write_text("i\n")
    (tmp_path / "outside.txt").write_text("o\n")
    return Workspace(root)


def bad(value, type_, workspace) -> str:
    with pytest.raises(_Bad) as e:
        check_value(value, type_, workspace)
    return str(e.value)


@pytest.mark.parametrize("name", ["../x", "../../../tmp/x", "a/b", "..", ".", "", "x\x00y"])
def test_a_basename_must_be_one_plain_name(workspace, name):
    literal = {"class": "File", "contents": "x", "basename": name}
    assert "basename" in bad(literal, "File", workspace)


def test_a_file_literal_with_a_plain_basename_is_accepted(workspace):
    literal = {"class": "File", "contents": "x", "basename": "x.txt"}
    assert check_value(literal, "File", workspace) == literal


def test_secondary_files_and_listings_are_checked_like_the_file(workspace, tmp_path):
    outside = str(tmp_path / "outside.txt")
    sec = {"class": "File", "path": "a.csv", "secondaryFiles": [{"class": "File", "path": outside}]}
    assert "secondaryFiles[0].path" in bad(sec, "File", workspace)
    deep = {
        "class": "Directory",
        "basename": "d",
        "listing": [
            {
                "class": "Directory",
                "basename": "e",
                "listing": [{"class": "File", "location": "file://" + outside}],
            }
        ],
    }
    assert "listing[0].listing[0].location" in bad(deep, "Directory", workspace)
    ok = {
        "class": "File",
        "path": "a.csv",
        "secondaryFiles": [{"class": "File", "path": "a.csv.idx"}],
    }
    checked = check_value(ok, "File", workspace)
    assert checked["secondaryFiles"][0]["path"] == str(workspace.root / "a.csv.idx")


def test_path_and_location_must_both_stay_inside(workspace, tmp_path):
    both = {"class": "File", "path": "a.csv", "location": str(tmp_path / "outside.txt")}
    assert "location" in bad(both, "File", workspace)


def test_a_format_that_is_a_local_file_must_be_inside(workspace, tmp_path):
    value = {"class": "File", "path": "a.csv", "format": str(tmp_path / "outside.txt")}
    assert "format" in bad(value, "File", workspace)
    value["format"] = "http://edamontology.org/format_3752"
    assert check_value(value, "File", workspace)["format"] == value["format"]


def test_unknown_fields_and_non_file_urls_are_refused(workspace):
    assert "listing" in bad({"class": "File", "path": "a.csv", "listing": []}, "File", workspace)
    assert "not a local path" in bad({"class": "File", "location": "http://x/y"}, "File", workspace)


def test_files_inside_untyped_values_are_checked(workspace, tmp_path):
    outside = {"class": "File", "path": str(tmp_path / "outside.txt")}
    assert "outside" in bad({"nested": [outside]}, "Any", workspace)
    assert "outside" in bad([outside], "#MySchema", workspace)
    record = {"type": "record", "fields": [{"name": "n", "type": "int"}]}
    assert "extra" in bad({"n": 1, "extra": outside}, record, workspace)


def test_deep_nesting_is_refused_not_a_crash(workspace):
    value: list = []
    for _ in range(5000):
        value = [value]
    assert "nested deeper" in bad(value, "Any", workspace)
    type_: object = "int"
    for _ in range(MAX_DEPTH + 5):
        type_ = {"type": "array", "items": type_}
    nested: object = 1
    for _ in range(MAX_DEPTH + 5):
        nested = [nested]
    assert "nested deeper" in bad(nested, type_, workspace)


# -- references in user CWL ---------------------------------------------------------------------


def refused(tmp_path, text: str, roots=None) -> ReferenceRefused:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    doc = ws / "wf.cwl"
    doc.write_text(text)
    with pytest.raises(ReferenceRefused) as e:
        check_references(doc, roots or [ws])
    return e.value


@pytest.mark.parametrize(
    "text, field",
    [
        ("doc: {$include: /etc/passwd}\n", "doc.$include"),
        ("doc: {$include: ../outside.txt}\n", "doc.$include"),
        ("requirements: [{$import: /etc/hosts}]\n", "requirements[0].$import"),
        ("steps: {s: {run: /etc/tool.cwl}}\n", "steps.s.run"),
        ("steps: {s: {run: 'http://127.0.0.1:8081/hub/api'}}\n", "steps.s.run"),
        ("steps: {s: {run: {$import: 'file:///etc/tool.cwl'}}}\n", "steps.s.run.$import"),
        ("inputs: {f: {default: {class: File, location: /etc/passwd}}}\n", "location"),
        ("inputs: {d: {default: {class: Directory, path: /root}}}\n", "path"),
        ("$schemas: [/etc/passwd]\n", "$schemas[0]"),
        ("$mixin: /etc/x.yml\n", "$mixin"),
    ],
)
def test_references_outside_the_allowed_folders_are_refused(tmp_path, text, field):
    e = refused(tmp_path, "cwlVersion: v1.2\nclass: Workflow\n" + text)
    assert field in e.field and e.document == "wf.cwl"


def test_references_are_followed_into_the_documents_they_name(tmp_path):
    ws = tmp_path / "ws"
    (ws / "tools").mkdir(parents=True)
    (ws / "tools" / "t.cwl").write_text("class: CommandLineTool\ndoc: {$include: /etc/passwd}\n")
    e = refused(tmp_path, "class: Workflow\nsteps: {s: {run: tools/t.cwl}}\n")
    assert e.document == "tools/t.cwl" and e.field == "doc.$include"


def test_references_inside_the_allowed_folders_pass(tmp_path):
    ws = tmp_path / "ws"
    catalogue = tmp_path / "catalogue"
    (catalogue / "m" / "pipelines").mkdir(parents=True)
    (catalogue / "m" / "pipelines" / "p.cwl").write_text("class: CommandLineTool\n")
    ws.mkdir()
    (ws / "t.cwl").write_text("class: CommandLineTool\nsteps: {x: {run: '#frag'}}\n")
    (ws / "notes.md").write_text("hello\n")
    doc = ws / "wf.cwl"
    doc.write_text(
        "class: Workflow\n$schemas: [https://edamontology.org/EDAM_1.18.owl]\n"
        "doc: {$include: notes.md}\n"
        "steps:\n  a: {run: t.cwl}\n  c: {run: '#x'}\n"
        f"  b: {{run: {catalogue}/m/pipelines/p.cwl}}\n"
    )
    check_references(doc, [ws, catalogue])


def test_a_link_out_of_the_workspace_is_refused(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "secret.txt").write_text("s\n")
    (ws / "innocent.txt").symlink_to(tmp_path / "secret.txt")
    e = refused(tmp_path, "doc: {$include: innocent.txt}\n")
    assert e.field == "doc.$include"


def test_resolvers_never_run_for_the_check(tmp_path, monkeypatch):
    # Pure: no DNS, no network, whatever the document names.
    def no_network(*args, **kwargs):
        raise AssertionError("the check used the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    refused(tmp_path, "steps: {s: {run: 'https://example.org/tool.cwl'}}\n")


def test_the_spawner_always_refuses_the_hub_and_proxy_apis():
    from types import SimpleNamespace

    from jupyterhub.objects import Hub

    from datalabs_spawner.spawner import DatalabsLocalSpawner

    proxy = SimpleNamespace(api_url="http://0.0.0.0:8001")  # a wildcard bind: loopback too
    user = SimpleNamespace(name="alice", escaped_name="alice", url="/user/alice/")
    user.settings = {"proxy": proxy}
    spawner = DatalabsLocalSpawner(
        hub=Hub(ip="127.0.0.1", port=8081, base_url="/hub/"),
        user=user,
        connection_allowed_networks=["127.0.0.1/32"],
        connection_refused_endpoints=["10.0.0.0/8"],
    )
    refused = spawner.refused_endpoints()
    assert refused == ["10.0.0.0/8", "127.0.0.1:8081", "127.0.0.1:8001"]
    policy = NetworkPolicy.from_strings(spawner.connection_allowed_networks, refused)
    assert policy.refusal("127.0.0.1", 8081) and policy.refusal("127.0.0.1", 8001)
    assert policy.refusal("127.0.0.1", 9000) is None
