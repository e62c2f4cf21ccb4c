"""Where a user's connections may go, checked when rclone connects: the egress proxy.

Checking a connection's host when it is saved is not enough: rclone follows HTTP redirects
(a WebDAV server on an allowed host answered ``302`` to a refused address and rclone went
there, the refused host's answer ending up in the error shown to the user), and a host name
may resolve to another address by the time rclone connects.

So every connection the session's rclone makes goes through :class:`EgressProxy`, a small HTTP
proxy on 127.0.0.1 that resolves the destination itself, checks each address against the
:class:`NetworkPolicy` and connects to the address it checked (no second lookup):

- HTTP(S) backends (WebDAV, S3, Dropbox, Google Drive, OAuth refreshes): rclone's global
  ``--http-proxy`` flag. Unlike the ``HTTP(S)_PROXY`` variables (Go's
  ``ProxyFromEnvironment``, which never proxies ``localhost`` or loopback addresses), it
  applies to every request, loopback destinations and redirects included: a redirect is a new
  request, so it reaches the proxy, which refuses it without ever contacting the refused host.
- SFTP and FTP (control and passive data connections): their ``--sftp-http-proxy`` and
  ``--ftp-http-proxy`` flags (HTTP ``CONNECT``).

A refusal is a ``403`` whose reason phrase and body say "refused by the Datalabs network
policy" and why; rclone puts that text in its error, which the session shows.

The policy: an address that is not globally routable (:attr:`ipaddress.IPv4Address.is_global`:
private, loopback, link-local, ``100.64.0.0/10`` shared address space, documentation and
benchmark ranges, multicast, reserved) is refused unless the operator allows its network;
``refused_endpoints`` (address or network, optionally with a port) are refused whatever the
allowed networks say, so loopback can be allowed for a test server while the hub's and the
proxy's API ports stay out of reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("datalabs.egress")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: The marker of a refusal in every message; the engine sorts errors by it.
REFUSAL = "refused by the Datalabs network policy"


@dataclass(frozen=True)
class Endpoint:
    """A network with an optional port: ``127.0.0.1:8081``, ``10.0.0.0/8``, ``[::1]:8001``."""

    network: Network
    port: int | None = None

    def matches(self, addr: Address, port: int | None) -> bool:
        return addr in self.network and (self.port is None or port == self.port)

    def __str__(self) -> str:
        net = str(self.network)
        if self.port is None:
            return net
        return f"[{net}]:{self.port}" if self.network.version == 6 else f"{net}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``"127.0.0.1:8081"``, ``"127.0.0.0/8"``, ``"[::1]:8001"`` or ``"::1"`` as an Endpoint."""
    value = text.strip()
    port: int | None = None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
        value = host
    elif value.count(":") == 1:
        value, _, port_text = value.partition(":")
        port = int(port_text)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return Endpoint(ipaddress.ip_network(value, strict=False), port)


def _plain(addr: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as the IPv4 address it is."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses (and ports) users' connections may reach. Pure.

    ``allowed_networks``: non-global networks the operator lets connections reach.
    ``refused_endpoints``: always refused, even inside an allowed network.
    """

    allowed_networks: tuple[Network, ...] = ()
    refused_endpoints: tuple[Endpoint, ...] = ()

    @classmethod
    def from_strings(
        cls, allowed: Iterable[str] = (), refused: Iterable[str] = ()
    ) -> NetworkPolicy:
        """A policy from the operator's CIDR and endpoint texts (ValueError if one is bad)."""
        return cls(
            tuple(ipaddress.ip_network(v, strict=False) for v in allowed),
            tuple(parse_endpoint(v) for v in refused),
        )

    def refusal(self, address: Address | str, port: int | None = None) -> str | None:
        """Why ``address`` (on ``port``) may not be reached, or None if it may."""
        addr = _plain(ipaddress.ip_address(address) if isinstance(address, str) else address)
        where = f"{addr}" if port is None else f"{addr} port {port}"
        for endpoint in self.refused_endpoints:
            if endpoint.matches(addr, port):
                return f"{where} is reserved for the platform itself ({endpoint})"
        if addr.is_global and not addr.is_multicast:
            return None
        if any(addr in net for net in self.allowed_networks):
            return None
        return (
            f"{where} is not a public internet address (it is in a private, loopback or "
            "link-local range, or another special one such as 100.64.0.0/10), which this "
            "platform does not connect to; ask the operator if you need it"
        )


def as_policy(value: NetworkPolicy | Iterable[Any] | None) -> NetworkPolicy:
    """A NetworkPolicy from a policy, or from allowed networks (objects or CIDR texts)."""
    if isinstance(value, NetworkPolicy):
        return value
    nets = tuple(
        v
        if isinstance(v, ipaddress.IPv4Network | ipaddress.IPv6Network)
        else ipaddress.ip_network(str(v), strict=False)
        for v in value or ()
    )
    return NetworkPolicy(nets)


# -- The proxy ----------------------------------------------------------------------------------

#: Largest request or response head relayed; WebDAV and S3 heads are a few hundred bytes.
MAX_HEAD = 64 * 1024
#: Request and response headers that describe one hop, never forwarded.
_HOP_HEADERS = {b"connection", b"proxy-connection", b"keep-alive", b"proxy-authorization"}


class Refused(Exception):
    """The destination is refused; ``message`` is what the client is told."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.message = message
        self.status = status


def _answer(status: int, message: str) -> bytes:
    text = message.replace("\r", " ").replace("\n", " ")
    body = (text + "\n").encode()
    return (
        f"HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _split_host_port(target: str, default_port: int) -> tuple[str, int]:
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        return host, int(port)
    return target, default_port


def _without_hop_headers(head_lines: list[bytes]) -> list[bytes]:
    return [
        line for line in head_lines if line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS
    ]


class EgressProxy:
    """An HTTP proxy (``CONNECT`` and absolute-form ``http://`` requests) on 127.0.0.1 that
    connects only where ``policy`` allows, on its own event loop in a daemon thread.

    ``url`` (after :meth:`start`) is what rclone's ``--http-proxy`` flags get. Each proxied
    ``http://`` request goes upstream with ``Connection: close`` and comes back with it, so a
    client connection carries one request: the next (a redirect's) is checked anew.
    """

    def __init__(self, policy: NetworkPolicy, connect_timeout: float = 5.0):
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.url = ""
        self.refusals: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Start listening (idempotent); the proxy URL."""
        if self._thread is not None and self._thread.is_alive():
            return self.url
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, "127.0.0.1", 0, limit=MAX_HEAD)
                )
            except BaseException as e:  # noqa: BLE001 - reported to start()
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="datalabs-egress", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure or self._server is None:
            raise RuntimeError(f"the egress proxy did not start: {failure[0] if failure else ''}")
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        """Stop listening and end the thread; connections under way are cut."""
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            if server is not None:
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    # -- one client connection --

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            lines = head[:-4].split(b"\r\n")
            try:
                method, target, version = lines[0].decode("latin-1").split(" ", 2)
            except ValueError:
                writer.write(_answer(400, "Bad Request"))
                return
            try:
                if method.upper() == "CONNECT":
                    host, port = _split_host_port(target, 443)
                    up_reader, upstream = await self._connect(host, port)
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await writer.drain()
                    await self._pipe_both(reader, writer, up_reader, upstream)
                    return
                url = urlsplit(target)
                if url.scheme != "http" or not url.hostname:
                    raise Refused(f"only http:// requests and CONNECT are proxied: {target}", 400)
                up_reader, upstream = await self._connect(url.hostname, url.port or 80)
            except Refused as e:
                if e.status == 403:
                    self.refusals.append(e.message)
                    log.warning("Egress refused: %s", e.message)
                writer.write(_answer(e.status, e.message))
                return
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            request = [f"{method} {path} {version}".encode("latin-1")]
            request += _without_hop_headers(lines[1:])
            request.append(b"Connection: close")
            upstream.write(b"\r\n".join(request) + b"\r\n\r\n")
            await upstream.drain()
            await self._relay_response(reader, writer, up_reader, upstream)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            return
        finally:
            for w in (upstream, writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        await w.drain()
                    w.close()

    async def _connect(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to ``host:port`` through an address the policy allows, or Refused."""
        loop = asyncio.get_running_loop()
        name = host.strip("[]")
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(name, port, type=socket.SOCK_STREAM), self.connect_timeout
            )
        except (OSError, TimeoutError, UnicodeError):
            raise Refused(f"{REFUSAL}: the host name {name!r} does not resolve", 502) from None
        addrs = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        # Every address the name has must pass, as when the connection was saved: a name
        # with one public and one private address could otherwise be steered to the latter.
        for addr in addrs:
            reason = self.policy.refusal(addr, port)
            if reason:
                raise Refused(f"{REFUSAL}: {name}: {reason}")
        last = "no address"
        for addr in addrs:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(str(addr), port, limit=MAX_HEAD), self.connect_timeout
                )
            except TimeoutError:
                last = "connection timeout"
            except OSError as e:
                last = (os.strerror(e.errno) if e.errno else str(e)).lower()
        # Not a refusal: the words rclone would have used, so the error reads the same.
        raise Refused(f"cannot connect to {name} port {port}: {last}", 502)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await src.read(1 << 18):
                dst.write(chunk)
                await dst.drain()
        with contextlib.suppress(Exception):
            if dst.can_write_eof():
                dst.write_eof()

    async def _pipe_both(self, r1, w1, r2, w2) -> None:
        await asyncio.gather(self._pipe(r1, w2), self._pipe(r2, w1))

    async def _relay_response(self, reader, writer, up_reader, upstream) -> None:
        """Request body up, response down with ``Connection: close``, until upstream ends."""
        body_up = asyncio.ensure_future(self._pipe(reader, upstream))
        try:
            while True:
                head = await up_reader.readuntil(b"\r\n\r\n")
                lines = head[:-4].split(b"\r\n")
                lines = [lines[0], *_without_hop_headers(lines[1:]), b"Connection: close"]
                writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
                status = lines[0].split(b" ", 2)
                # "100 Continue" and other interim answers come before the real one.
                if len(status) < 2 or not status[1].startswith(b"1") or status[1] == b"101":
                    break
            await self._pipe(up_reader, writer)
        finally:
            body_up.cancel()
