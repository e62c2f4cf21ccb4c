"""What the Datalabs REST handlers share: JSON bodies, JSON errors, the storage service."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_server.base.handlers import APIHandler

from datalabs_volumes.session import StorageError, StorageSession

#: Largest request body read; connections are small.
MAX_BODY = 64 * 1024


class DatalabsHandler(APIHandler):
    """Base of the Datalabs handlers: ``self.storage``, ``self.body()``, ``self.reply()``."""

    auth_resource = "contents"

    @property
    def storage(self) -> StorageSession:
        return self.settings["datalabs_storage"]

    def body(self, required: bool = True) -> Any:
        raw = self.request.body or b""
        if len(raw) > MAX_BODY:
            raise StorageError(413, f"The request body is larger than {MAX_BODY} bytes.")
        if not raw.strip():
            if required:
                raise StorageError(400, "This request needs a JSON body.")
            return {}
        try:
            return json.loads(raw)
        except ValueError as e:
            raise StorageError(400, f"The request body is not valid JSON ({e}).") from None
        except RecursionError:
            # json.loads raises this, not ValueError, for very deeply nested arrays/objects.
            raise StorageError(400, "The request body is nested too deeply.") from None

    def reply(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value))

    async def run(self, call: Callable[[], Awaitable[Any]], status: int = 200) -> None:
        """Answer with what ``call()`` gives, or with a JSON error a person can act on."""
        try:
            value = await call()
        except StorageError as e:
            self.fail(e)
            return
        if value is None:
            self.set_status(204)
            self.finish()
        else:
            self.reply(value, status)

    def fail(self, error: StorageError) -> None:
        body: dict[str, Any] = {"message": error.message, "reason": error.reason or None}
        if error.retry_after is not None:
            # Nothing was changed and the same request may work later (the hub restarting).
            body["retryable"] = True
            self.set_header("Retry-After", str(error.retry_after))
        self.reply(body, error.status)
