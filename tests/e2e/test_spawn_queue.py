"""A real hub that starts one session at a time: three users press Start, all three get one.

Its own hub (``concurrent_starts=1``), not the shared ``demo_hub``. The single-user command
waits for a gate (a loopback port the test opens) before it becomes JupyterLab, so the first
start holds the only slot until the test has seen the other two queued: the places are then
certain, however loaded the machine is.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.e2e.hubprocess import Hub, gated_server_cmd, running_hub

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USERS = ["carol", "dave", "erin"]
QUITTER = "frank"
BODY = {"profile": "planetary-lab", "volumes": ["psa-rosetta", "spice-juice"]}


class ProgressReader:
    """Reads a user's spawn progress event stream (the spawn page's source) in a thread."""

    def __init__(self, hub: Hub, user: str) -> None:
        self.events: list[dict] = []
        self.changed = threading.Condition()
        self.response = requests.get(
            f"{hub.url}/hub/api/users/{user}/server/progress",
            headers={"Authorization": f"token {hub.token}"},
            stream=True,
            timeout=120,
        )
        assert self.response.status_code == 200, self.response.text
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    with self.changed:
                        self.events.append(json.loads(line[5:]))
                        self.changed.notify_all()
        except requests.RequestException:
            pass  # closed by close()

    def wait_for(self, text: str, timeout: float = 60) -> dict:
        """The first event whose message contains ``text``."""
        with self.changed:
            found = self.changed.wait_for(
                lambda: next((e for e in self.events if text in e.get("message", "")), None),
                timeout,
            )
        assert found, f"no progress event with {text!r} in {timeout} s: {self.events}"
        return found

    def close(self) -> None:
        self.response.close()


def post_start(hub: Hub, user: str, answers: dict) -> threading.Thread:
    def post():
        answers[user] = hub.api("POST", f"users/{user}/server", json=BODY)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def wait_pending(hub: Hub, user: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.api("GET", f"users/{user}").json().get("pending") == "spawn":
            return
        time.sleep(0.05)
    raise AssertionError(f"{user}'s start is not pending after {timeout} s")


def test_three_users_start_together_with_one_start_at_a_time(tmp_path, demo_archive):
    state = tmp_path / "hub"
    state.mkdir()
    # The single-user server as configured, once the gate is open: a loopback port the test
    # starts listening on (the sandbox shares the host's network, not its files).
    gate = socket.socket()
    gate.bind(("127.0.0.1", 0))
    cmd = gated_server_cmd(gate)
    args = ["--DatalabsLocalSpawner.concurrent_starts=1", f"--Spawner.cmd={cmd!r}"]
    readers: list[ProgressReader] = []
    with running_hub(state, demo_archive, args) as hub:
        try:
            for user in USERS:
                r = hub.api("POST", f"users/{user}")
                assert r.status_code == 201, r.text
            answers: dict = {}
            posts = []
            for user in USERS:
                posts.append(post_start(hub, user, answers))
                wait_pending(hub, user)
                readers.append(ProgressReader(hub, user))
                if user != USERS[0]:
                    # In the queue before the next user presses Start.
                    readers[-1].wait_for("Waiting for a free start slot")
            first, second, third = readers
            first.wait_for("Starting")  # the first start holds the slot (behind the gate)
            assert second.wait_for("Waiting")["message"].startswith(
                "Waiting for a free start slot: yours is next (1 under way, at most 1 at once)"
            )
            assert "1 start ahead of yours" in third.wait_for("Waiting")["message"]
            # A fourth user starts too, then changes their mind while queued: they leave.
            assert hub.api("POST", f"users/{QUITTER}").status_code == 201
            posts.append(post_start(hub, QUITTER, answers))
            wait_pending(hub, QUITTER)
            readers.append(ProgressReader(hub, QUITTER))
            assert "2 starts ahead of yours" in readers[-1].wait_for("Waiting")["message"]
            hub.stop_server(QUITTER)
            gate.listen()
            for user in USERS:
                hub.wait_ready(user, timeout=120)
            for post in posts:
                post.join(30)
            assert {u: answers[u].status_code in (201, 202) for u in USERS} == dict.fromkeys(
                USERS, True
            ), {u: answers[u].text for u in USERS}
            # The third moved up as the others started, and was told so.
            third.wait_for("yours is next")
            for user in USERS:
                listing = hub.server(user, "GET", "api/contents/data").json()
                assert sorted(c["name"] for c in listing["content"]) == BODY["volumes"]
            model = hub.api("GET", f"users/{QUITTER}").json()
            assert not model["servers"] and not model["pending"], model
            assert not (state / "workspaces" / QUITTER).exists()  # nothing was made for them
        finally:
            gate.listen()  # (again: harmless if it already listens)
            for reader in readers:
                reader.close()
            for user in [*USERS, QUITTER]:
                hub.stop_server(user)
            gate.close()
