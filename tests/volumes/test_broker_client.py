"""The session's broker client against real sockets on 127.0.0.1: a hub that is down, one
that stops answering in the middle of a request, a proxy in front of a hub that is down, and
the broker's own refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from datalabs_volumes.access import AccessError
from datalabs_volumes.broker_client import RETRY_AFTER, BrokerClient
from tests.helpers import free_port

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[BrokerClient]:
    """A broker client for user alice, pointed at a server that answers with ``answer``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request's head; the bodies here are tiny
        try:
            await answer(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield BrokerClient(f"http://127.0.0.1:{port}/hub/datalabs/v1/", "alice", "t0ken", 10)
    finally:
        server.close()
        await server.wait_closed()


def response(status: str, content_type: str, body: bytes) -> Answer:
    async def answer(_reader, writer):
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    return answer


async def test_a_hub_that_is_down_is_a_retryable_503_and_nothing_changed():
    broker = BrokerClient(f"http://127.0.0.1:{free_port()}/hub/datalabs/v1/", "alice", "t", 10)
    with pytest.raises(AccessError) as caught:
        await broker.attach("psa-rosetta")
    assert (caught.value.status, caught.value.retry_after) == (503, RETRY_AFTER)
    assert caught.value.message == (
        "The hub is not answering (it may be restarting), so nothing was changed. "
        f"Try again in {RETRY_AFTER} seconds."
    )


async def test_a_hub_that_stops_answering_mid_request_is_retryable_and_says_it_may_be_done():
    async def hang_up(_reader, _writer):
        pass  # the connection closes with no answer, as when the hub is killed

    async with serving(hang_up) as broker:
        with pytest.raises(AccessError) as caught:
            await broker.attach("psa-rosetta")
    assert (caught.value.status, caught.value.retry_after) == (503, RETRY_AFTER)
    assert "stopped answering before it finished" in caught.value.message
    assert "if the volume already shows the change by then" in caught.value.message


async def test_a_proxy_answering_for_a_hub_that_is_down_is_retryable():
    down = response("503 Service Unavailable", "text/html", b"<h1>Service Unavailable</h1>")
    async with serving(down) as broker:
        with pytest.raises(AccessError) as caught:
            await broker.readable()
    assert (caught.value.status, caught.value.retry_after) == (503, RETRY_AFTER)


async def test_the_broker_s_own_refusal_is_passed_on_and_not_retryable():
    body = json.dumps({"status": 403, "message": "Volume 'x' does not exist or you may not"})
    refused = response("403 Forbidden", "application/json", body.encode())
    async with serving(refused) as broker:
        with pytest.raises(AccessError) as caught:
            await broker.attach("x")
    assert (caught.value.status, caught.value.retry_after) == (403, None)
    assert caught.value.message == "Volume 'x' does not exist or you may not"
