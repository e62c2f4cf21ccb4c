"""The start queue (``datalabs_spawner.queue``) with real asyncio: no sleeps, only events."""

from __future__ import annotations

import asyncio

import pytest
from traitlets import TraitError

from datalabs_spawner.queue import (
    START_MEMORY_BYTES,
    QueuedStartMixin,
    StartQueue,
    machine_start_slots,
    place_message,
    shared_queue,
)


async def test_starts_beyond_the_limit_wait_and_are_admitted_first_come_first_served():
    queue = StartQueue(2)
    tickets = [queue.join(f"u{i}") for i in range(5)]
    assert [t.admitted.done() for t in tickets] == [True, True, False, False, False]
    assert [t.ahead for t in tickets[2:]] == [0, 1, 2]

    admitted = []
    for t in tickets[2:]:
        t.admitted.add_done_callback(lambda _f, t=t: admitted.append(t.name))
    queue.done(tickets[1])
    queue.done(tickets[0])
    await asyncio.wait_for(tickets[3].admitted, 10)
    assert admitted == ["u2", "u3"]
    assert tickets[4].ahead == 0 and not tickets[4].admitted.done()
    queue.done(tickets[2])
    await asyncio.wait_for(tickets[4].admitted, 10)
    assert admitted == ["u2", "u3", "u4"]
    assert queue.running == {tickets[3], tickets[4]} and not queue.waiting


async def test_a_start_that_leaves_the_queue_moves_the_others_up_and_never_takes_a_slot():
    queue = StartQueue(1)
    first, second, third = (queue.join(n) for n in ("a", "b", "c"))
    assert third.ahead == 1
    queue.done(second)  # b stopped while queued
    assert second.admitted.cancelled()
    assert third.ahead == 0
    queue.done(first)
    assert third.admitted.done() and not third.admitted.cancelled()
    assert queue.running == {third}
    queue.done(second)  # again: harmless
    queue.done(first)
    assert queue.running == {third}


async def test_place_changes_wake_the_waiting_start():
    queue = StartQueue(1)
    running = queue.join("a")
    queue.join("b")
    third = queue.join("c")
    assert place_message(third, queue).startswith("Waiting for a free start slot: 1 start ahead")
    third.changed.clear()
    queue.done(running)
    await asyncio.wait_for(third.changed.wait(), 10)
    assert third.ahead == 0
    assert "yours is next" in place_message(third, queue)
    assert "1 under way, at most 1 at once" in place_message(third, queue)


async def test_raising_the_limit_admits_waiting_starts():
    queue = StartQueue(1)
    tickets = [queue.join(n) for n in "abc"]
    queue.set_limit(3)
    assert all(t.admitted.done() for t in tickets)
    with pytest.raises(ValueError, match="at least 1"):
        queue.set_limit(0)


def test_the_default_limit_follows_cores_and_memory():
    assert machine_start_slots(cores=2, available_bytes=24 * 2**30) == 2
    assert machine_start_slots(cores=16, available_bytes=3 * START_MEMORY_BYTES) == 3
    assert machine_start_slots(cores=4, available_bytes=START_MEMORY_BYTES // 2) == 1
    assert machine_start_slots() >= 1


class FakeHubSpawner:
    """What JupyterHub's Spawner gives the mixin: a pre-spawn hook and a log."""

    hook_calls = 0

    def run_pre_spawn_hook(self):
        FakeHubSpawner.hook_calls += 1


class Spawner(QueuedStartMixin, FakeHubSpawner):
    pass


def test_concurrent_starts_is_checked():
    assert Spawner().concurrent_starts == machine_start_slots()
    assert Spawner(concurrent_starts=0).concurrent_starts == machine_start_slots()
    assert Spawner(concurrent_starts=3).concurrent_starts == 3
    with pytest.raises(TraitError, match="concurrent_starts must be 0"):
        Spawner(concurrent_starts=-1)


async def test_the_hub_spawn_future_frees_the_slot_whatever_ends_it():
    """As in JupyterHub: the pre-spawn hook runs inside the spawn future that a Stop cancels."""
    loop = asyncio.get_running_loop()
    spawners = [Spawner(concurrent_starts=1) for _ in range(3)]
    released = [loop.create_future() for _ in spawners]

    async def spawn(i):
        await spawners[i].run_pre_spawn_hook()
        await released[i]  # the start, until the server answers

    futures = []
    for i, s in enumerate(spawners):
        s._spawn_future = asyncio.ensure_future(spawn(i))
        futures.append(s._spawn_future)
    queue = shared_queue(1)

    async def until(condition):
        while not condition():
            await asyncio.sleep(0)  # one loop turn, not a timed wait

    await asyncio.wait_for(until(lambda: len(queue.waiting) == 2), 10)
    third = spawners[2]._start_ticket
    events = spawners[2]._queue_progress()
    first_event = await asyncio.wait_for(events.__anext__(), 10)
    assert "1 start ahead of yours" in first_event["message"]

    futures[1].cancel()  # the second user presses Stop while queued
    second_event = await asyncio.wait_for(events.__anext__(), 10)
    assert "yours is next" in second_event["message"]
    assert [t.name for t in queue.waiting] == ["?"]

    released[0].set_exception(RuntimeError("the server crashed"))  # the first start fails
    with pytest.raises(RuntimeError, match="crashed"):
        await asyncio.wait_for(futures[0], 10)
    await asyncio.wait_for(until(lambda: third.admitted.done()), 10)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(events.__anext__(), 10)
    released[2].set_result(None)
    await asyncio.wait_for(futures[2], 10)
    await asyncio.wait_for(until(lambda: not queue.running and not queue.waiting), 10)
    assert FakeHubSpawner.hook_calls == 2  # the operator's own hook ran for each admitted start


async def test_the_slot_is_handed_on_as_soon_as_the_server_answers():
    """Not when the hub's backing-off wait notices: the next start begins at once."""
    from types import SimpleNamespace

    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    from tests.helpers import free_port

    port = free_port()

    class Launching(FakeHubSpawner):
        async def start(self):  # as LocalProcessSpawner: the process is launched, not yet up
            return ("127.0.0.1", port)

    class Booting(QueuedStartMixin, Launching):
        server = SimpleNamespace(base_url="/user/a/")

    loop = asyncio.get_running_loop()
    first, second = Booting(concurrent_starts=1), Booting(concurrent_starts=1)
    hub_done = [loop.create_future(), loop.create_future()]  # the hub's spawns, still pending

    async def spawn(spawner, done):
        await spawner.run_pre_spawn_hook()
        await spawner.start()
        await done

    for spawner, done in zip((first, second), hub_done, strict=True):
        spawner._spawn_future = asyncio.ensure_future(spawn(spawner, done))
    queue = shared_queue(1)

    async def until(condition):
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(until(lambda: second._start_ticket is not None), 10)
    assert not second._start_ticket.admitted.done()

    class Api(RequestHandler):
        def get(self):
            self.write("{}")

    http = HTTPServer(Application([(r"/user/a/api", Api)]))
    http.listen(port, "127.0.0.1")  # the first server is up
    try:
        await asyncio.wait_for(until(lambda: second._start_ticket.admitted.done()), 30)
        assert not hub_done[0].done()  # before the hub finished the first spawn
    finally:
        http.stop()
        for done in hub_done:
            done.set_result(None)
        await asyncio.gather(first._spawn_future, second._spawn_future)
    await asyncio.wait_for(until(lambda: not queue.running and not queue.waiting), 10)
