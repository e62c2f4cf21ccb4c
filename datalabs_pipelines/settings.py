"""Where pipeline runs live and how they are started, shared by the CLI and the REST API.

The jupyter-server extension turns its traitlets into a :class:`Settings`; the CLI reads the same
values from the environment, so both look at one run store.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .crate import DEFAULT_CHECKSUM_LIMIT

#: Environment variables the CLI honours (the server extension uses traitlets instead).
ENV_HOME = "DATALABS_PIPELINES_HOME"
ENV_MAX_RUNS = "DATALABS_PIPELINES_MAX_RUNS"
ENV_CONTAINERS = "DATALABS_PIPELINES_CONTAINERS"
ENV_PROVENANCE = "DATALABS_PIPELINES_PROVENANCE"
ENV_CACHE = "DATALABS_PIPELINES_CACHE"
#: Input files up to this many bytes get a SHA-1 in a run's provenance (-1: every file).
ENV_CHECKSUM_LIMIT = "DATALABS_PIPELINES_CHECKSUM_LIMIT"
#: The workspace size quota the hub sets (bytes; runs and saves are refused over it).
ENV_WORKSPACE_QUOTA = "DATALABS_WORKSPACE_QUOTA_BYTES"

_SAFE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


def default_home() -> Path:
    """The run store of the current user: ``$DATALABS_PIPELINES_HOME`` (``~`` expanded: the
    spawners pass ``~/pipeline-runs``, the home of the session), else
    ``$XDG_DATA_HOME/datalabs/pipelines``."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(data) / "datalabs" / "pipelines"


def default_user() -> str:
    """The user name runs are recorded under: the hub user inside a session, else the login."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


def check_user_name(user: str) -> str:
    """Refuse an empty or absurd user name (runs are keyed by it)."""
    if not user or len(user) > 256 or "\x00" in user:
        raise ValueError(f"unusable user name {user!r}")
    return user


def user_slug(user: str) -> str:
    """A folder name for ``user``: the name itself when safe, else a cleaned name plus a hash
    (jupyter-server's anonymous users have spaces in their names)."""
    if _SAFE_RE.match(user):
        return user
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", user).strip("._")[:40] or "user"
    return f"{cleaned}-{hashlib.sha256(user.encode()).hexdigest()[:10]}"


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """How runs are stored and started.

    ``home`` holds ``runs.db``, one folder per run (``runs/<id>/``) and one cwltool cache per user
    (``cache/<user>/``).
    """

    home: Path = field(default_factory=default_home)
    user: str = field(default_factory=default_user)
    max_concurrent: int = 4
    #: Run every tool directly on the host (``--no-container``): the embedded default, since a
    #: single-machine hub rarely has a container engine the user may drive.
    no_container: bool = True
    #: Write a Workflow Run RO-Crate per run that names its inputs (see ``crate.py``).
    provenance: bool = True
    cache: bool = True
    #: Inputs up to this many bytes get a SHA-1 in the provenance; larger ones are named by
    #: volume, path, size and modification time only (-1 hashes every input).
    checksum_limit: int = DEFAULT_CHECKSUM_LIMIT
    #: Extra cwltool options appended to every run (operator controlled, never user input).
    cwltool_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_user_name(self.user)
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``DATALABS_PIPELINES_*`` environment variables, then ``overrides``."""
        values: dict[str, object] = {"home": default_home()}
        if os.environ.get(ENV_MAX_RUNS):
            values["max_concurrent"] = int(os.environ[ENV_MAX_RUNS])
        values["no_container"] = not _flag(ENV_CONTAINERS, False)
        values["provenance"] = _flag(ENV_PROVENANCE, True)
        values["cache"] = _flag(ENV_CACHE, True)
        if os.environ.get(ENV_CHECKSUM_LIMIT):
            values["checksum_limit"] = int(os.environ[ENV_CHECKSUM_LIMIT])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def db_path(self) -> Path:
        return self.home / "runs.db"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def cache_dir(self, user: str) -> Path:
        """The per-user cwltool cache: a re-run with changed inputs reuses the unchanged steps."""
        return self.home / "cache" / user_slug(check_user_name(user))
