"""Connections through the REST API cannot reach what the network policy refuses.

Each test makes a WebDAV connection the way the Data panel does (``POST connections``, which
tests it with the session's real ``rclone rcd`` before saving it) on a real jupyter-server
whose policy allows loopback ``127.0.0.1/32`` (as the demo does) and reserves one port on it
(as the demo reserves the hub's API). docs/security.md lists the rules these tests prove.
"""

from __future__ import annotations

import secrets

import pytest

pytestmark = pytest.mark.slow

#: What a refused host answers; it must never reach the user.
SECRET = "RefusedHostBody" + secrets.token_hex(8)


def webdav(name: str, url: str) -> dict:
    return {"name": name, "backend": "webdav", "options": {"url": url, "vendor": "other"}}


def refused_target(http_server, host: str = "127.0.0.2", port: int = 0):
    """A server the policy refuses, answering with SECRET to anything that reaches it."""
    return http_server(
        lambda m, p: (500, {"Content-Type": "text/plain"}, SECRET.encode()), host, port
    )


def redirector(http_server, location: str, status: int = 302):
    """An allowed server (127.0.0.1) that redirects every request to ``location``."""
    return http_server(lambda m, p: (status, {"Location": location + p}, b"moved"))


def assert_refused_by_policy(response, target) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["reason"] == "policy", body
    assert "network policy" in body["message"], body
    assert SECRET not in response.text
    assert target.requests == [], "the refused host was contacted"


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_a_refused_address_is_not_followed(guarded_lab, http_server, status):
    # 127.0.0.2 is loopback but outside the allowed 127.0.0.1/32.
    target = refused_target(http_server)
    allowed = redirector(http_server, target.url, status)
    r = guarded_lab.api("POST", "connections", json=webdav(f"redirected-{status}", allowed.url))
    assert allowed.requests, "the allowed server was never asked"
    assert_refused_by_policy(r, target)
    assert guarded_lab.api("GET", f"connections/redirected-{status}").status_code == 404
    assert SECRET not in guarded_lab.log.read_text()


def test_a_redirect_to_a_reserved_port_on_an_allowed_network_is_not_followed(
    guarded_lab, http_server, reserved_port
):
    # As a redirect to the hub's API at 127.0.0.1:8081 in the demo.
    hub = refused_target(http_server, "127.0.0.1", reserved_port)
    allowed = redirector(http_server, hub.url)
    r = guarded_lab.api("POST", "connections", json=webdav("to-hub", allowed.url))
    assert_refused_by_policy(r, hub)


def test_a_reserved_port_is_refused_when_the_connection_is_saved(
    guarded_lab, http_server, reserved_port
):
    hub = refused_target(http_server, "127.0.0.1", reserved_port)
    r = guarded_lab.api("POST", "connections", json=webdav("hub-api", hub.url + "/hub/api"))
    assert r.status_code == 400, r.text
    assert r.json()["reason"] == "options.url"
    assert "reserved for the platform" in r.json()["message"]
    assert hub.requests == []


@pytest.mark.parametrize(
    "url", ["http://100.64.0.1/dav", "http://192.0.2.10/dav", "http://[::ffff:10.0.0.1]/dav"]
)
def test_addresses_that_are_not_public_are_refused(guarded_lab, url):
    # Shared address space (carrier-grade NAT), documentation range, IPv4-mapped private.
    r = guarded_lab.api("POST", "connections", json=webdav("special", url))
    assert r.status_code == 400, r.text
    assert r.json()["reason"] == "options.url"
    assert "not a public internet address" in r.json()["message"]


def test_a_deeply_nested_body_is_a_400(guarded_lab):
    # 30,000 levels: under the 64 KiB body limit, far over Python's recursion limit.
    r = guarded_lab.api("POST", "connections", data="[" * 30_000 + "]" * 30_000)
    assert r.status_code == 400, r.text
    assert "nested too deeply" in r.json()["message"]
