"""Connections to a user's own storage: which backends, which options, and how they are checked.

A connection is ``{"name": ..., "backend": ..., "options": {...}, "path": ...}`` where the
options carry rclone's own option names for that backend (webdav: ``url``, ``vendor``, ``user``,
``pass``). Everything here is an allowlist: a backend or an option that is not listed is refused,
because rclone has many that read local files (``key_file``, ``service_account_file``), run
commands (sftp ``ssh``) or reach the hub's own credentials (s3 ``env_auth``), and a user's
connection must reach nothing but the user's storage.

Hosts that are not public internet addresses (private, loopback, link-local, shared 100.64/10,
reserved...) are refused unless the operator allows the range, and endpoints the operator
reserves (the hub's API) always, so that a connection cannot be used to probe the platform's
own network (:class:`datalabs_volumes.egress.NetworkPolicy`; checked again at connect time).

Pure: no rclone process, no I/O beyond resolving host names.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .egress import NetworkPolicy, as_policy

#: Connection names double as folder names under ``data/`` and as rclone remote names.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
NAME_RE = re.compile(NAME_PATTERN)
#: Longest option value accepted; OAuth tokens and PEM keys are the long ones.
MAX_VALUE_CHARS = 8192
#: Control characters would let a value start a new line (a new key) in rclone's config file.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

REDACTED = "********"


class InvalidConnection(ValueError):
    """A connection that cannot be accepted; ``field`` names the part to fix."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Backend:
    """What a user may set for one rclone backend.

    ``options``: allowed option names; ``secrets``: those among them that are credentials
    (obscured for rclone, encrypted at rest, redacted in answers); ``required``: must be given;
    ``hosts``: options holding a host name or URL, checked against the network policy;
    ``choices``: options restricted to a set of values; ``fixed``: set by us, never by the user.
    ``kernel``: mounted by the kernel rather than by rclone (NFS).
    """

    type: str
    title: str
    options: frozenset[str]
    secrets: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    choices: Mapping[str, frozenset[str]] = field(default_factory=dict)
    fixed: Mapping[str, str] = field(default_factory=dict)
    oauth: bool = False
    kernel: bool = False


def _fs(*names: str) -> frozenset[str]:
    return frozenset(names)


BACKENDS: dict[str, Backend] = {
    "webdav": Backend(
        "webdav",
        "WebDAV (Nextcloud, ownCloud, SharePoint, any WebDAV server)",
        options=_fs("url", "vendor", "user", "pass", "bearer_token"),
        secrets=_fs("pass", "bearer_token"),
        required=_fs("url"),
        hosts=_fs("url"),
        choices={
            "vendor": _fs(
                "other",
                "nextcloud",
                "owncloud",
                "sharepoint",
                "sharepoint-ntlm",
                "rclone",
                "fastmail",
                "infinitescale",
            )
        },
    ),
    "ftp": Backend(
        "ftp",
        "FTP",
        options=_fs("host", "port", "user", "pass", "tls", "explicit_tls", "disable_epsv"),
        secrets=_fs("pass"),
        required=_fs("host"),
        hosts=_fs("host"),
        choices={
            "tls": _fs("true", "false"),
            "explicit_tls": _fs("true", "false"),
            "disable_epsv": _fs("true", "false"),
        },
    ),
    "sftp": Backend(
        "sftp",
        "SFTP (SSH file transfer)",
        # No key_file, known_hosts_file, ssh (runs a command) or *sum_command options.
        options=_fs("host", "port", "user", "pass", "key_pem", "key_file_pass", "shell_type"),
        secrets=_fs("pass", "key_pem", "key_file_pass"),
        required=_fs("host"),
        hosts=_fs("host"),
        choices={"shell_type": _fs("none", "unix", "powershell", "cmd")},
    ),
    "s3": Backend(
        "s3",
        "S3 and compatible object stores",
        options=_fs(
            "provider",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "region",
            "endpoint",
            "location_constraint",
            "force_path_style",
        ),
        secrets=_fs("secret_access_key", "session_token"),
        required=_fs("provider"),
        hosts=_fs("endpoint"),
        choices={"force_path_style": _fs("true", "false")},
        # Never the hub's own AWS credentials from its environment or instance profile.
        fixed={"env_auth": "false"},
    ),
    "nfs": Backend(
        "nfs",
        "NFS export (mounted by the kernel's NFS client)",
        options=_fs("server", "export", "port", "mountport", "version"),
        required=_fs("server", "export"),
        hosts=_fs("server"),
        choices={"version": _fs("3", "4", "4.1", "4.2")},
        kernel=True,
    ),
    "dropbox": Backend(
        "dropbox",
        'Dropbox (token from `rclone authorize "dropbox"`)',
        options=_fs("token", "client_id", "client_secret"),
        secrets=_fs("token", "client_secret"),
        required=_fs("token"),
        oauth=True,
    ),
    "drive": Backend(
        "drive",
        'Google Drive (token from `rclone authorize "drive"`)',
        options=_fs("token", "client_id", "client_secret", "scope", "root_folder_id", "team_drive"),
        secrets=_fs("token", "client_secret"),
        required=_fs("token"),
        choices={
            "scope": _fs(
                "drive",
                "drive.readonly",
                "drive.file",
                "drive.appfolder",
                "drive.metadata.readonly",
            )
        },
        oauth=True,
    ),
}

_INT_OPTIONS = {"port", "mountport"}


@dataclass(frozen=True)
class Connection:
    """A user's named connection to their own storage.

    ``options`` hold rclone's option names with secrets in clear: this object lives in memory
    only; at rest it is encrypted (``credentials``), in answers it is ``redacted()``.
    ``path``: the folder (or bucket/prefix) inside the storage that is mounted; empty: the root.
    ``writable``: the user asked to mount it read-write (read-only otherwise).
    """

    name: str
    backend: str
    options: Mapping[str, str]
    path: str = ""
    writable: bool = False

    @property
    def spec(self) -> Backend:
        return BACKENDS[self.backend]

    def secret_values(self) -> list[str]:
        """The secret values in clear, for scrubbing them out of error messages."""
        return [v for k, v in self.options.items() if k in self.spec.secrets and v]

    def redacted(self) -> dict[str, Any]:
        """The connection as the REST API shows it: secrets replaced, never sent back."""
        return {
            "name": self.name,
            "backend": self.backend,
            "options": {
                k: (REDACTED if k in self.spec.secrets else v)
                for k, v in sorted(self.options.items())
            },
            "path": self.path,
            "writable": self.writable,
        }

    def rclone_parameters(self) -> dict[str, str]:
        """Parameters for rclone's ``config/create`` (secrets in clear; rclone obscures them)."""
        params = dict(self.options)
        params.update(self.spec.fixed)
        return params

    def to_json(self) -> dict[str, Any]:
        """Everything, secrets included: only for the encrypted store."""
        return {
            "name": self.name,
            "backend": self.backend,
            "options": dict(self.options),
            "path": self.path,
            "writable": self.writable,
        }


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value (and its JSON-escaped form) replaced by a placeholder."""
    for s in sorted(set(secrets), key=len, reverse=True):
        if len(s) >= 3:
            text = text.replace(s, REDACTED)
            quoted = json.dumps(s)[1:-1]
            if quoted != s:
                text = text.replace(quoted, REDACTED)
    return text


# -- Network policy ---------------------------------------------------------------------------


def parse_networks(values: Iterable[str]) -> tuple[ipaddress._BaseNetwork, ...]:
    """Operator-allowed networks (``"127.0.0.1/32"``, ``"10.0.0.0/8"``) as network objects."""
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _forbidden_address(addr: ipaddress._BaseAddress) -> bool:
    """Not a public internet address (see :meth:`NetworkPolicy.refusal`)."""
    return NetworkPolicy().refusal(addr) is not None  # type: ignore[arg-type]


def check_host(
    host: str,
    allowed_networks: NetworkPolicy | Iterable[ipaddress._BaseNetwork] = (),
    resolve: bool = True,
    port: int | None = None,
) -> None:
    """Refuse a host that is not a public internet address unless the operator allows its
    network, and a host and port the operator reserves (``NetworkPolicy``).

    Names are resolved and every address they resolve to is checked. This is the early check,
    when a connection is saved; the egress proxy (:mod:`datalabs_volumes.egress`) checks again
    at every connection rclone makes, redirects included.
    """
    policy = as_policy(allowed_networks)
    host = host.strip("[]")
    try:
        addrs = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            raise InvalidConnection(
                "host", f"the host name {host!r} does not resolve; check its spelling"
            ) from None
        addrs = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for addr in addrs:
        reason = policy.refusal(addr, port)  # type: ignore[arg-type]
        if reason:
            raise InvalidConnection("host", reason if str(addr) == host else f"{host}: {reason}")


def _host_of(option: str, value: str) -> tuple[str, int | None]:
    """The host and port (None: the backend's default) of a host or URL option."""
    if "://" not in value:
        if value.count(":") == 1:  # host:port
            host, _, port = value.partition(":")
            if port.isdigit():
                return host, int(port)
        return value, None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise InvalidConnection(f"options.{option}", "must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise InvalidConnection(
            f"options.{option}", "must not contain a user name or password; use user and pass"
        )
    if not parts.hostname:
        raise InvalidConnection(f"options.{option}", "has no host name")
    try:
        port = parts.port
    except ValueError:
        raise InvalidConnection(f"options.{option}", "has an invalid port") from None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


#: The port a backend connects to when none is given.
_DEFAULT_PORTS = {"ftp": 21, "sftp": 22, "s3": 443, "nfs": 2049}


# -- Validation -------------------------------------------------------------------------------


def check_name(name: Any) -> str:
    """A connection name: lower-case letters, digits and dashes, 1-40 characters."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidConnection(
            "name",
            f"{name!r} is not a valid connection name: use 1-40 lower-case letters, digits "
            "and dashes (it becomes the folder data/<name>)",
        )
    return name


def check_path(path: Any) -> str:
    """The folder inside the storage: relative or absolute, without ``..`` or control chars."""
    if path in (None, ""):
        return ""
    if not isinstance(path, str) or len(path) > 1024 or _CONTROL_RE.search(path):
        raise InvalidConnection("path", "must be a folder path without control characters")
    if "\\" in path or ".." in PurePosixPath(path).parts:
        raise InvalidConnection("path", "must not contain '..' or backslashes")
    return path


def _option_value(option: str, value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidConnection(f"options.{option}", "must be a string, a number or a boolean")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidConnection(f"options.{option}", f"is longer than {MAX_VALUE_CHARS} characters")
    if _CONTROL_RE.search(value):
        raise InvalidConnection(
            f"options.{option}",
            "must not contain line breaks or control characters (PEM keys: replace line "
            "breaks with the two characters \\n, as rclone expects)",
        )
    return value


def _check_token(value: str) -> None:
    try:
        token = json.loads(value)
    except ValueError:
        token = None
    if not isinstance(token, dict) or not token.get("access_token"):
        raise InvalidConnection(
            "options.token",
            "must be the JSON token printed by `rclone authorize` "
            '(starting with {"access_token": ...})',
        )


def validate(
    doc: Any,
    allowed_networks: NetworkPolicy | Iterable[ipaddress._BaseNetwork] = (),
    resolve: bool = True,
) -> Connection:
    """A Connection from a user's JSON document; InvalidConnection names the field to fix.

    ``allowed_networks``: a :class:`NetworkPolicy`, or the networks it allows.
    """
    if not isinstance(doc, Mapping):
        raise InvalidConnection(
            "(body)",
            'a connection is a JSON object: {"name": ..., "backend": ..., "options": {...}}',
        )
    unknown = sorted(set(doc) - {"name", "backend", "options", "path", "writable"})
    if unknown:
        raise InvalidConnection(
            unknown[0], "unknown field (known: name, backend, options, path, writable)"
        )
    name = check_name(doc.get("name"))
    backend = doc.get("backend")
    if backend not in BACKENDS:
        raise InvalidConnection(
            "backend",
            f"{backend!r} is not offered; choose one of {', '.join(sorted(BACKENDS))}",
        )
    spec = BACKENDS[backend]
    raw = doc.get("options") or {}
    if not isinstance(raw, Mapping):
        raise InvalidConnection("options", "must be a JSON object of rclone option names")
    options: dict[str, str] = {}
    for key, value in raw.items():
        if key not in spec.options:
            raise InvalidConnection(
                f"options.{key}",
                f"is not an option users may set for {backend} "
                f"(allowed: {', '.join(sorted(spec.options))})",
            )
        if value is None or value == "":
            continue
        text = _option_value(key, value)
        if key in spec.choices and text not in spec.choices[key]:
            raise InvalidConnection(
                f"options.{key}", f"must be one of {', '.join(sorted(spec.choices[key]))}"
            )
        if key in _INT_OPTIONS and not (text.isdigit() and 0 < int(text) < 65536):
            raise InvalidConnection(f"options.{key}", "must be a port number (1-65535)")
        options[key] = text
    for key in sorted(spec.required - set(options)):
        raise InvalidConnection(f"options.{key}", f"is required for {backend}")
    if spec.oauth:
        _check_token(options["token"])
    policy = as_policy(allowed_networks)
    for key in sorted(spec.hosts & set(options)):
        host, port = _host_of(key, options[key])
        if not re.fullmatch(r"[A-Za-z0-9.:\[\]_-]+", host):
            raise InvalidConnection(f"options.{key}", f"{host!r} is not a host name or address")
        if port is None:
            given = options.get("port")
            port = int(given) if given else _DEFAULT_PORTS.get(backend)
        try:
            check_host(host, policy, resolve=resolve, port=port)
        except InvalidConnection as e:
            raise InvalidConnection(f"options.{key}", e.message) from None
    if spec.kernel and "export" in options:
        export = options["export"]
        if not export.startswith("/") or ".." in PurePosixPath(export).parts:
            raise InvalidConnection("options.export", "must be an absolute export path without ..")
    writable = doc.get("writable", False)
    if not isinstance(writable, bool):
        raise InvalidConnection("writable", "must be true or false")
    return Connection(name, backend, options, check_path(doc.get("path")), writable)


def merge_patch(current: Connection, patch: Any) -> dict[str, Any]:
    """The document a PATCH produces: given fields replace; an option set to null is removed.

    Secrets the client does not send (or sends back redacted) are kept, so a form can show the
    redacted connection and send it back with only what the user changed.
    """
    if not isinstance(patch, Mapping):
        raise InvalidConnection("(body)", "a PATCH body is a JSON object of the fields to change")
    doc = current.to_json()
    if "name" in patch and patch["name"] != current.name:
        raise InvalidConnection("name", "cannot be changed; create a new connection instead")
    for key in ("backend", "path", "writable"):
        if key in patch:
            doc[key] = patch[key]
    if "options" in patch:
        if not isinstance(patch["options"], Mapping):
            raise InvalidConnection("options", "must be a JSON object")
        for k, v in patch["options"].items():
            if v is None:
                doc["options"].pop(k, None)
            elif v == REDACTED:
                continue
            else:
                doc["options"][k] = v
    if doc["backend"] != current.backend:
        # Options of one backend mean nothing to another.
        doc["options"] = dict(patch.get("options") or {})
    return doc
