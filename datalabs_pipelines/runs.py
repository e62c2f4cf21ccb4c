"""The run store: one SQLite file with a row per run and a row per step.

Every process that touches runs (the jupyter-server extension, each run's supervisor, the CLI)
opens the same ``runs.db``. WAL mode lets readers go on while a supervisor writes step events.
Rows are keyed by user name: every lookup a user can reach takes the user, so another user's run
is simply "not found".
"""

from __future__ import annotations

import json
import random
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUEUED = "queued"
RUNNING = "running"
SUCCESS = "success"
FAILED = "failed"
CANCELLING = "cancelling"
CANCELLED = "cancelled"

RUN_STATES = (QUEUED, RUNNING, SUCCESS, FAILED, CANCELLING, CANCELLED)
#: States in which a run holds (or is about to hold) a process.
ACTIVE_STATES = (RUNNING, CANCELLING)
FINAL_STATES = (SUCCESS, FAILED, CANCELLED)

STEP_STATES = ("running", "success", "failed", "skipped")

_RUN_ID_RE = re.compile(r"^[0-9a-f]{16}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    pipeline_path TEXT NOT NULL,
    inputs TEXT NOT NULL,
    job_path TEXT,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    rundir TEXT NOT NULL,
    outdir TEXT NOT NULL,
    cwd TEXT NOT NULL,
    argv TEXT NOT NULL,
    detached INTEGER NOT NULL,
    exit_code INTEGER,
    exit_reason TEXT,
    outputs TEXT,
    supervisor_pid INTEGER,
    supervisor_started REAL,
    pgid INTEGER,
    rerun_of TEXT
);
CREATE INDEX IF NOT EXISTS runs_user ON runs (user, created);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state, created);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    started REAL,
    finished REAL,
    peak_memory_mib INTEGER,
    cached INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    PRIMARY KEY (run_id, name)
);
"""


def new_run_id() -> str:
    """A fresh run id: 16 hex digits, safe as a folder name and in a URL."""
    return secrets.token_hex(8)


def is_run_id(value: str) -> bool:
    """Whether ``value`` looks like a run id (anything else, e.g. ``../x``, is refused early)."""
    return bool(_RUN_ID_RE.match(value))


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass
class Step:
    """One workflow step (or the single job of a CommandLineTool) as cwltool reported it."""

    name: str
    state: str
    started: float | None = None
    finished: float | None = None
    peak_memory_mib: int | None = None
    cached: bool = False
    #: Why the step ended as it did, when the executor knows more than cwltool said
    #: (``killed: out of memory``).
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started"] = _iso(self.started)
        data["finished"] = _iso(self.finished)
        return data


@dataclass
class Run:
    """A pipeline run: what was asked for, where it stands, and where its files are."""

    id: str
    user: str
    pipeline: str
    pipeline_path: str
    inputs: dict[str, Any]
    state: str
    created: float
    rundir: str
    outdir: str
    cwd: str
    argv: list[str]
    detached: bool
    job_path: str | None = None
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    exit_reason: str | None = None
    outputs: dict[str, Any] | None = None
    supervisor_pid: int | None = None
    supervisor_started: float | None = None
    pgid: int | None = None
    rerun_of: str | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def to_json(self, with_steps: bool = True) -> dict[str, Any]:
        """The public view of a run (no process ids, no command line)."""
        data: dict[str, Any] = {
            "id": self.id,
            "user": self.user,
            "pipeline": self.pipeline,
            "inputs": self.inputs,
            "state": self.state,
            "created": _iso(self.created),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "outdir": self.outdir,
            "exit_code": self.exit_code,
            "exit_reason": self.exit_reason,
            "outputs": self.outputs,
            "rerun_of": self.rerun_of,
        }
        if with_steps:
            data["steps"] = [s.to_json() for s in self.steps]
        return data


_JSON_COLUMNS = {"inputs", "argv", "outputs"}
_BOOL_COLUMNS = {"detached"}


def _run_from_row(row: sqlite3.Row) -> Run:
    values = dict(row)
    for key in _JSON_COLUMNS:
        if values.get(key) is not None:
            values[key] = json.loads(values[key])
    for key in _BOOL_COLUMNS:
        values[key] = bool(values[key])
    return Run(**values)


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    """Column values as SQLite stores them (JSON text, 0/1)."""
    out = dict(fields)
    for key in _JSON_COLUMNS & out.keys():
        if out[key] is not None:
            out[key] = json.dumps(out[key])
    for key in _BOOL_COLUMNS & out.keys():
        out[key] = int(out[key])
    return out


class RunNotFound(KeyError):
    """No run with that id for that user."""


def _use_wal(db: sqlite3.Connection, patience: float = 30.0) -> None:
    """Switch a new store to WAL, waiting for other processes doing the same.

    Changing the journal mode needs the database to itself and SQLite answers "locked" at once
    instead of waiting, so two runs started together on a brand-new store (the CLI under a test
    runner, or two servers) would fail; WAL is persistent, so once one process has set it the
    others only read it.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + random.random() * 0.05)


class RunStore:
    """Runs and steps in SQLite; safe to share between threads and processes."""

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)
            # Stores made before steps had a message get the column (NULL for their steps).
            columns = {row["name"] for row in db.execute("PRAGMA table_info(steps)")}
            if "message" not in columns:
                try:
                    db.execute("ALTER TABLE steps ADD COLUMN message TEXT")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):  # another process added it first
                        raise

    # A connection per thread: sqlite3 connections must not be shared across threads, and the
    # server runs store calls in a thread pool.
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            _use_wal(db)
            # NORMAL is durable across process crashes in WAL mode; only a power cut could lose
            # the last events, which the next reconcile then reports.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        yield self._db()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An exclusive write transaction (``BEGIN IMMEDIATE``), for claim-then-update logic."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- runs -------------------------------------------------------------------------------

    def add(self, run: Run) -> Run:
        """Insert a new run."""
        values = asdict(run)
        values.pop("steps")
        values = _encode(values)
        cols = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        with self._connect() as db:
            db.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", values)
        return run

    def get(self, run_id: str, user: str | None = None, with_steps: bool = True) -> Run:
        """The run ``run_id``; with ``user``, only if it belongs to that user."""
        if not is_run_id(run_id):
            raise RunNotFound(run_id)
        with self._connect() as db:
            if user is None:
                row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            else:
                row = db.execute(
                    "SELECT * FROM runs WHERE id = ? AND user = ?", (run_id, user)
                ).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            run = _run_from_row(row)
            if with_steps:
                run.steps = self.steps(run_id)
        return run

    def list(
        self, user: str | None = None, states: tuple[str, ...] | None = None, limit: int = 500
    ) -> list[Run]:
        """Runs, newest first, optionally for one user and in some states (steps not loaded)."""
        query = "SELECT * FROM runs"
        clauses: list[str] = []
        params: list[Any] = []
        if user is not None:
            clauses.append("user = ?")
            params.append(user)
        if states:
            clauses.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(states)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY created DESC, rowid DESC LIMIT ?"
        params.append(limit)
        with self._connect() as db:
            return [_run_from_row(r) for r in db.execute(query, params).fetchall()]

    def update(self, run_id: str, **fields: Any) -> None:
        """Set columns of one run."""
        fields = _encode(fields)
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE runs SET {sets} WHERE id = :_id", {**fields, "_id": run_id})

    def set_state_if(self, run_id: str, expected: tuple[str, ...], **fields: Any) -> bool:
        """Update a run only while it is in one of ``expected`` states; True if it was."""
        fields = _encode(fields)
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        marks = ", ".join(f":_s{i}" for i in range(len(expected)))
        params = {**fields, "_id": run_id, **{f"_s{i}": s for i, s in enumerate(expected)}}
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE runs SET {sets} WHERE id = :_id AND state IN ({marks})", params
            )
            return cur.rowcount == 1

    def count_active(self, db: sqlite3.Connection | None = None) -> int:
        """How many runs hold a process slot."""
        conn = db or self._db()
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        row = conn.execute(f"SELECT count(*) FROM runs WHERE state IN ({marks})", ACTIVE_STATES)
        return int(row.fetchone()[0])

    # -- steps ------------------------------------------------------------------------------

    def steps(self, run_id: str) -> list[Step]:
        """The steps of a run in the order they started."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, state, started, finished, peak_memory_mib, cached, message "
                "FROM steps WHERE run_id = ? ORDER BY coalesce(started, 1e18), rowid",
                (run_id,),
            ).fetchall()
        return [
            Step(
                name=r["name"],
                state=r["state"],
                started=r["started"],
                finished=r["finished"],
                peak_memory_mib=r["peak_memory_mib"],
                cached=bool(r["cached"]),
                message=r["message"],
            )
            for r in rows
        ]

    def upsert_step(self, run_id: str, name: str, **fields: Any) -> None:
        """Create the step row if needed, then set ``fields`` (state, started, finished, ...)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO steps (run_id, name, state, started) VALUES (?, ?, ?, ?)",
                (run_id, name, fields.get("state", "running"), fields.get("started", time.time())),
            )
            if fields:
                sets = ", ".join(f"{k} = :{k}" for k in fields)
                db.execute(
                    f"UPDATE steps SET {sets} WHERE run_id = :_r AND name = :_n",
                    {**fields, "_r": run_id, "_n": name},
                )

    def close_open_steps(self, run_id: str, state: str, when: float) -> None:
        """Mark steps still "running" when their run ended (e.g. killed by a cancel)."""
        with self._connect() as db:
            db.execute(
                "UPDATE steps SET state = ?, finished = ? WHERE run_id = ? AND state = 'running'",
                (state, when, run_id),
            )
