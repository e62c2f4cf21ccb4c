"""Session starts wait their turn: at most N at once, the rest in a fair first-come queue.

Measured on the embedded hub (2 cores): 40 users pressing Start together all failed, because
40 single-user servers booting at once each took longer than the hub's 60 s timeouts. One at a
time per core, each boots in a few seconds. So the spawner takes a *start slot* before it does
anything costly and gives it back when the server answers (or the start fails or is cancelled).

Where the wait happens, and why it never counts against ``Spawner.start_timeout``: JupyterHub
(``User.spawn``) times only ``spawner.start()`` (``asyncio.wait_for(start(), start_timeout)``)
and then the server's first answer (``http_timeout``). ``run_pre_spawn_hook()`` runs before,
untimed, while the spawn is already pending (so the progress page is live and a Stop cancels
it). The queue wait is done there. The slot is held until the hub's whole spawn future is done
(server answering and routed, or failed, or cancelled): that is what releases it, whichever
way the spawn ends, so no path can leak a slot.

``StartQueue`` is plain asyncio and knows nothing of JupyterHub; ``QueuedStartMixin`` is the
glue for a spawner.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from traitlets import Integer, TraitError, default, validate
from traitlets.config import LoggingConfigurable

#: Memory a starting session needs before it settles (an idle one measured 146 MB).
START_MEMORY_BYTES = 400 * 1024 * 1024


def machine_start_slots(cores: int | None = None, available_bytes: int | None = None) -> int:
    """How many session starts this machine carries at once: one per core, fewer if memory
    is short (a start needs about ``START_MEMORY_BYTES``), never fewer than one."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
    if available_bytes is None:
        available_bytes = _available_memory()
    by_memory = available_bytes // START_MEMORY_BYTES if available_bytes else cores
    return max(1, min(cores, by_memory))


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(eq=False)
class Ticket:
    """One start's place: waiting (``ahead`` starts queued before it) until ``admitted``."""

    name: str
    admitted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ahead: int = 0
    #: Set (and replaced) whenever ``ahead`` or the number under way changes.
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class StartQueue:
    """At most ``limit`` starts under way; the others wait first come, first served.

    ``join()`` returns a ``Ticket`` at once; ``await ticket.admitted`` waits for the slot;
    ``done(ticket)`` gives the slot back, or leaves the queue if it was still waiting.
    Calling ``done`` twice is harmless, so every way a start can end may call it.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"start limit must be at least 1, not {limit}")
        self.limit = limit
        self.waiting: deque[Ticket] = deque()
        self.running: set[Ticket] = set()

    def join(self, name: str) -> Ticket:
        """Queue a start named ``name`` (for messages); admitted at once if a slot is free."""
        ticket = Ticket(name)
        self.waiting.append(ticket)
        self._advance()
        return ticket

    def done(self, ticket: Ticket) -> None:
        """The start ended (ready, failed or cancelled): free its slot or its place."""
        if ticket in self.running:
            self.running.discard(ticket)
        else:
            try:
                self.waiting.remove(ticket)
            except ValueError:
                return
            if not ticket.admitted.done():
                ticket.admitted.cancel()
        self._advance()

    def set_limit(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"start limit must be at least 1, not {limit}")
        self.limit = limit
        self._advance()

    def _advance(self) -> None:
        while self.waiting and len(self.running) < self.limit:
            ticket = self.waiting.popleft()
            self.running.add(ticket)
            ticket.ahead = 0
            if not ticket.admitted.done():
                ticket.admitted.set_result(None)
            ticket.changed.set()
        for place, ticket in enumerate(self.waiting):
            ticket.ahead = place
            ticket.changed.set()


def place_message(ticket: Ticket, queue: StartQueue) -> str:
    """What the user reads on the spawn page while waiting."""
    ahead = ticket.ahead
    waiting = (
        f"{ahead} start{'s' if ahead != 1 else ''} ahead of yours" if ahead else "yours is next"
    )
    return (
        f"Waiting for a free start slot: {waiting} "
        f"({len(queue.running)} under way, at most {queue.limit} at once)"
    )


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StartQueue] = (
    weakref.WeakKeyDictionary()
)


def shared_queue(limit: int) -> StartQueue:
    """The hub process's one start queue for this event loop (all users' spawners share it)."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = StartQueue(limit)
    elif queue.limit != limit:
        queue.set_limit(limit)
    return queue


class QueuedStartMixin(LoggingConfigurable):
    """Spawner mixin: the start waits for a start slot before anything costly happens."""

    concurrent_starts = Integer(
        config=True,
        help="""
        How many sessions may be starting at the same time on this machine. Further starts
        wait in a first-come, first-served queue, and each user's spawn page shows their place
        ("3 starts ahead of yours"). The wait happens before JupyterHub's ``start_timeout``
        begins, so a long queue never makes a start time out; a start keeps its slot until its
        server answers, fails or is stopped (a user who stops while queued leaves the queue).

        Why: 40 users pressing Start at once on a 2-core machine made 40 servers boot side by
        side, each then took longer than the hub's 60 s timeouts, and none started. Booting a
        few at a time, each takes a few seconds.

        Default: what the machine carries, one start per CPU core this process may use, fewer
        if available memory is short (about 400 MB per start). 0 means that default too.
        Example: ``c.DatalabsLocalSpawner.concurrent_starts = 4``.
        """,
    )

    @default("concurrent_starts")
    def _default_concurrent_starts(self) -> int:
        return machine_start_slots()

    @validate("concurrent_starts")
    def _check_concurrent_starts(self, proposal: dict[str, Any]) -> int:
        value = proposal["value"]
        if value < 0:
            raise TraitError(f"concurrent_starts must be 0 (automatic) or more, not {value}")
        return value or machine_start_slots()

    _start_ticket: Ticket | None = None
    _start_queue: StartQueue | None = None

    async def run_pre_spawn_hook(self):
        """Wait for a start slot (untimed: JupyterHub's start_timeout has not begun)."""
        queue = shared_queue(self.concurrent_starts)
        name = getattr(getattr(self, "user", None), "name", "?")
        ticket = queue.join(name)
        self._start_queue, self._start_ticket = queue, ticket
        spawn_future = getattr(self, "_spawn_future", None)
        if spawn_future is not None:
            # Whatever ends the spawn (ready and routed, failed, timed out, cancelled by a
            # Stop) frees the slot or the place in the queue.
            spawn_future.add_done_callback(lambda _f: self._spawn_ended(ticket))
        if not ticket.admitted.done():
            self.log.info(
                "Start of %s queued: %d ahead, %d under way", name, ticket.ahead, len(queue.running)
            )
        try:
            await ticket.admitted
        except BaseException:
            queue.done(ticket)
            raise
        if spawn_future is None:
            # Called outside the hub's spawn path: nothing else will free the slot.
            queue.done(ticket)
        hook = super().run_pre_spawn_hook()  # type: ignore[misc]
        if hook is not None and hasattr(hook, "__await__"):
            await hook

    async def start(self):
        """Launch the server (the next class's start); free the slot as soon as it answers.

        The hub's own wait for the server backs off exponentially (0.2 s doubling up to 5 s),
        so a server that is up could hold its slot for seconds more while others queue:
        polling it here every 0.1 s hands the slot on at once. The spawn future's end stays
        the release of last resort.
        """
        url = await super().start()  # type: ignore[misc]
        ticket, queue = self._start_ticket, self._start_queue
        if ticket is not None and queue is not None and ticket in queue.running:
            task = asyncio.ensure_future(self._release_when_answering(url, ticket, queue))
            self._answer_watch = task  # keep a reference until it ends
        return url

    async def _release_when_answering(self, url: Any, ticket: Ticket, queue: StartQueue) -> None:
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        if not isinstance(url, str):
            ip, port = url
            url = f"http://{ip}:{port}"
        probe = url.rstrip("/") + self.server.base_url.rstrip("/") + "/api"  # type: ignore[attr-defined]
        client = AsyncHTTPClient()
        while ticket in queue.running:
            try:
                await client.fetch(probe, request_timeout=2, connect_timeout=1)
                break
            except HTTPClientError as e:
                if e.code != 599:  # 599: no answer (time-out); anything else is an answer
                    break
            except OSError:  # not listening yet
                pass
            proc = getattr(self, "proc", None)  # LocalProcessSpawner's Popen
            if proc is not None and proc.poll() is not None:
                break  # it died; the hub will notice and fail the spawn
            await asyncio.sleep(0.1)
        queue.done(ticket)

    def _spawn_ended(self, ticket: Ticket) -> None:
        if self._start_queue is not None:
            self._start_queue.done(ticket)
        if self._start_ticket is ticket:
            self._start_ticket = None

    async def _queue_progress(self) -> AsyncIterator[dict[str, Any]]:
        """Progress events while the start waits: its place, each time it changes."""
        # The progress page may ask before the hub has reached the pre-spawn hook.
        while self._start_ticket is None:
            if not getattr(self, "_spawn_pending", False):
                return
            await asyncio.sleep(0.1)
        ticket, queue = self._start_ticket, self._start_queue
        if queue is None:
            return
        last = None
        while not ticket.admitted.done():
            ticket.changed.clear()
            message = place_message(ticket, queue)
            if message != last:
                yield {"message": message}
                last = message
            await _wait_either(ticket.changed.wait(), ticket.admitted)

    def _leave_start_queue(self) -> None:
        """Give back the slot or the place (also done when the spawn future ends)."""
        if self._start_queue is not None and self._start_ticket is not None:
            self._start_queue.done(self._start_ticket)


async def _wait_either(coro: Any, future: asyncio.Future[None]) -> None:
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.wait({task, future}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()


__all__ = [
    "QueuedStartMixin",
    "StartQueue",
    "Ticket",
    "machine_start_slots",
    "place_message",
    "shared_queue",
]
