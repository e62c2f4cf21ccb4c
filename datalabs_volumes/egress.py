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

import contextlib
import errno
import fcntl
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
#: Bytes moved per splice call.
CHUNK = 1 << 20
#: fcntl's F_SETPIPE_SZ (Linux), which Python 3.11's fcntl module does not name everywhere.
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
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


def _read_head(sock: socket.socket, data: bytes = b"") -> tuple[bytes, bytes]:
    """``(head without its blank line, bytes read past it)``, starting from ``data`` already
    read; ConnectionError if the peer closes first or the head is larger than MAX_HEAD."""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return data[:end], data[end + 4 :]
        if len(data) > MAX_HEAD:
            raise ConnectionError("head too large")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the head")
        data += chunk


def _relay(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends: in the kernel (splice through a pipe) where
    it can, so the proxy adds no copy through Python to a file read through a mount."""
    try:
        pipe_r, pipe_w = os.pipe()
    except OSError:
        pipe_r = pipe_w = -1
    else:
        with contextlib.suppress(OSError):
            # A 1 MiB pipe (default 64 KiB): 16x fewer splice calls on a large read.
            fcntl.fcntl(pipe_w, F_SETPIPE_SZ, CHUNK)
    try:
        if pipe_r >= 0 and hasattr(os, "splice"):
            try:
                while True:
                    n = os.splice(src.fileno(), pipe_w, CHUNK)
                    if n == 0:
                        return
                    while n:
                        n -= os.splice(pipe_r, dst.fileno(), n)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    return
                # EINVAL before any byte moved: this socket type cannot splice; copy instead.
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := src.recv_into(buf):
            dst.sendall(view[:n])
    except OSError:
        return
    finally:
        for fd in (pipe_r, pipe_w):
            if fd >= 0:
                os.close(fd)


class EgressProxy:
    """An HTTP proxy (``CONNECT`` and absolute-form ``http://`` requests) on 127.0.0.1 that
    connects only where ``policy`` allows; a thread per client connection.

    ``url`` (after :meth:`start`) is what rclone's ``--http-proxy`` flags get. Each proxied
    ``http://`` request goes upstream with ``Connection: close`` and comes back with it, so a
    client connection carries one request: the next (a redirect's) is checked anew. After the
    heads, bytes are relayed by the kernel (``splice``): measured on a 256 MiB WebDAV read
    through a mount, an asyncio relay halved the throughput.
    """

    def __init__(self, policy: NetworkPolicy, connect_timeout: float = 5.0):
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.url = ""
        self.refusals: list[str] = []
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> str:
        """Start listening (idempotent); the proxy URL."""
        if self._thread is not None and self._thread.is_alive():
            return self.url
        listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener = listener
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, name="datalabs-egress", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop listening and cut the connections under way."""
        listener, thread = self._listener, self._thread
        self._listener = self._thread = None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(10)

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None and self._listener is listener:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._open.add(sock)
        return sock

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        self._track(client)
        try:
            client.settimeout(30)
            try:
                head, rest = _read_head(client)
            except (ConnectionError, OSError):
                return
            lines = head.split(b"\r\n")
            try:
                method, target, version = lines[0].decode("latin-1").split(" ", 2)
                if method.upper() == "CONNECT":
                    host, port = _split_host_port(target, 443)
                    url = None
                else:
                    url = urlsplit(target)
                    if url.scheme != "http" or not url.hostname:
                        raise Refused(
                            f"only http:// requests and CONNECT are proxied: {target}", 400
                        )
                    host, port = url.hostname, url.port or 80
            except ValueError:
                client.sendall(_answer(400, "Bad Request"))
                return
            except Refused as e:
                client.sendall(_answer(e.status, e.message))
                return
            try:
                upstream = self._track(self._connect(host, port))
            except Refused as e:
                if e.status == 403:
                    self.refusals.append(e.message)
                    log.warning("Egress refused: %s", e.message)
                client.sendall(_answer(e.status, e.message))
                return
            client.settimeout(None)
            upstream.settimeout(None)
            if url is None:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
                self._both_ways(client, upstream)
                return
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            request = [f"{method} {path} {version}".encode("latin-1")]
            request += _without_hop_headers(lines[1:])
            request.append(b"Connection: close")
            upstream.sendall(b"\r\n".join(request) + b"\r\n\r\n" + rest)
            up = threading.Thread(target=self._then_close, args=(client, upstream), daemon=True)
            up.start()
            self._response(upstream, client)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._open.discard(sock)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    def _then_close(self, src: socket.socket, dst: socket.socket) -> None:
        """Relay ``src`` to ``dst``; when either side ends, end both (unblocks the other way)."""
        _relay(src, dst)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _both_ways(self, a: socket.socket, b: socket.socket) -> None:
        other = threading.Thread(target=self._then_close, args=(b, a), daemon=True)
        other.start()
        self._then_close(a, b)
        other.join()

    def _response(self, upstream: socket.socket, client: socket.socket) -> None:
        """The response, its head with ``Connection: close``, until upstream ends."""
        rest = b""
        while True:
            head, rest = _read_head(upstream, rest)
            lines = head.split(b"\r\n")
            lines = [lines[0], *_without_hop_headers(lines[1:]), b"Connection: close"]
            client.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
            status = lines[0].split(b" ", 2)
            # "100 Continue" and other interim answers come before the real one.
            if len(status) < 2 or not status[1].startswith(b"1") or status[1] == b"101":
                break
        if rest:
            client.sendall(rest)
        _relay(upstream, client)

    def _connect(self, host: str, port: int) -> socket.socket:
        """A connection to ``host:port`` through an address the policy allows, or Refused."""
        name = host.strip("[]")
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
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
                return socket.create_connection((str(addr), port), timeout=self.connect_timeout)
            except TimeoutError:
                last = "connection timeout"
            except OSError as e:
                last = (os.strerror(e.errno) if e.errno else str(e)).lower()
        # Not a refusal: the words rclone would have used, so the error reads the same.
        raise Refused(f"cannot connect to {name} port {port}: {last}", 502)
