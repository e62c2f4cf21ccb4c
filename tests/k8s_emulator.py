"""A Kubernetes API emulator for tests: KubeSpawner's lifecycle on 127.0.0.1 with no cluster.

No API server can run on the machines this project is tested on, so the spawn lifecycle is tested
against `kmock`'s ``KubernetesEmulator`` (an in-memory store of objects served over real HTTP by
aiohttp). ``KubeAPIEmulator`` below is a small subclass that fills the gaps KubeSpawner 7 runs into
(the project's FACTS.md lists them under "Kubernetes without a cluster"):

What it emulates
- Core v1 ``pods`` (with the ``status`` subresource), ``events``, ``persistentvolumeclaims``,
  ``services`` and ``secrets``, namespaced, with create (POST), get, list, watch, patch, delete.
  More resources can be declared through kmock's ``emulator.resources[...]``.
- ``watch=True`` as kubernetes_asyncio spells it (kmock alone only knows ``watch=true``).
- Fields the server owns, filled on create: ``metadata.namespace`` (from the URL), ``name`` from
  ``generateName``, ``uid``, ``creationTimestamp``, ``apiVersion``/``kind``; pods start in
  ``status.phase: Pending``; events get their nullable timestamps; a Secret's ``stringData`` is
  folded into base64 ``data``.
- ``resourceVersion``: one cluster-wide counter, bumped by every create, patch and delete. Lists
  report the current one; a watch started from one replays what happened after it (or answers
  ``410 Expired`` once the bounded journal has forgotten), a watch without one starts with ``ADDED``
  for every existing object, as the real server does.
- ``labelSelector`` (``a=b``, ``a==b``, ``a!=b``, ``a in (b,c)``, ``a notin (b,c)``, ``a``, ``!a``)
  and ``fieldSelector`` (``path=value``, ``path!=value`` on any dotted path) on lists and watches.
  As in the real watch cache, an object patched into or out of a selector is reported to the
  watch as ``ADDED`` or ``DELETED``.
- ``timeoutSeconds`` on watches: the server ends the stream, so clients reconnect on time.
- Garbage collection: deleting an object deletes, in the same request, the objects in its
  namespace whose every ``ownerReference`` points at a deleted object (KubeSpawner's services and
  secrets are owned by the pod).
- The kubelet is played by the test: ``play_kubelet`` makes a pod ``Running`` with a ``podIP`` and
  ready container statuses, ``play_exit`` makes its containers terminate.

What it does not emulate
- Scheduling, images, a kubelet, networking: nothing runs; ``podIP`` is whatever the test says.
- Graceful deletion: a pod is gone as soon as it is deleted (no ``deletionTimestamp`` phase, unless
  it carries finalizers, which kmock honours).
- PUT (replace), ``deletecollection``, ``dryRun``, server-side apply, pagination (``limit`` and
  ``continue`` are ignored: lists are complete), bookmarks, admission, quotas, RBAC and
  authentication (any token is accepted), schema validation (validate manifests with
  kubernetes-validate instead), and strategic merge patch, which is treated as a JSON merge patch
  (lists are replaced, not merged).
- Namespaces as objects: ``POST /api/v1/namespaces`` crashes kmock's path parser, so KubeSpawner's
  ``enable_user_namespaces`` cannot be tested here.
- Any other resource: undeclared ones answer 404, as on a cluster without that API.
- Namespaces that do not exist and RBAC: a test that needs such an answer asks for it with
  ``refuse()`` (e.g. 404 on creating Jobs in a namespace, or 403 on a verb).
"""

import asyncio
import base64
import collections
import contextlib
import copy
import datetime
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import kmock

Obj = dict[str, Any]

# Only what the emulator really serves is advertised through discovery (no update/deletecollection).
_VERBS = {"create", "delete", "get", "list", "patch", "watch"}

CORE_RESOURCES: dict[str, kmock.ResourceInfo] = {
    "v1/pods": kmock.ResourceInfo(
        kind="Pod",
        singular="pod",
        namespaced=True,
        verbs=_VERBS,
        shortnames={"po"},
        subresources={"status"},
    ),
    "v1/events": kmock.ResourceInfo(
        kind="Event",
        singular="event",
        namespaced=True,
        verbs=_VERBS,
        shortnames={"ev"},
    ),
    "v1/persistentvolumeclaims": kmock.ResourceInfo(
        kind="PersistentVolumeClaim",
        singular="persistentvolumeclaim",
        namespaced=True,
        verbs=_VERBS,
        shortnames={"pvc"},
        subresources={"status"},
    ),
    "v1/services": kmock.ResourceInfo(
        kind="Service",
        singular="service",
        namespaced=True,
        verbs=_VERBS,
        shortnames={"svc"},
        subresources={"status"},
    ),
    "v1/secrets": kmock.ResourceInfo(
        kind="Secret",
        singular="secret",
        namespaced=True,
        verbs=_VERBS,
    ),
}

PODS = kmock.resource("v1/pods")

# Go's strconv.ParseBool, which the API server uses for query flags such as `watch`.
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_NOT_EXISTS = re.compile(rf"!\s*(?P<key>{_KEY})")
_SET = re.compile(rf"(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)")
_EQUALITY = re.compile(rf"(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})")
_EXISTS = re.compile(rf"(?P<key>{_KEY})")
_FIELD = re.compile(r"(?P<key>[A-Za-z0-9_.-]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^,]*)")


class SelectorError(ValueError):
    """A label or field selector the API server would refuse with 400 Bad Request."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One comma-separated term of a selector, e.g. ``tier in (web,db)``."""

    key: str
    op: str  # one of "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, value: str | None) -> bool:
        """Whether a label (or field) value satisfies this term; ``None`` means absent."""
        match self.op:
            case "=" | "in":
                return value is not None and value in self.values
            case "!=" | "notin":
                return value is None or value not in self.values
            case "exists":
                return value is not None
            case "!":
                return value is None
        raise AssertionError(f"unknown selector operator {self.op!r}")


def _split_terms(text: str) -> Iterator[str]:
    # Commas also separate the values of `in (a,b)`, so only split outside parentheses.
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            yield text[start:index].strip()
            start = index + 1
    yield text[start:].strip()


def parse_label_selector(text: str) -> tuple[Requirement, ...]:
    """Parse a ``labelSelector`` query value; an empty one selects everything."""
    if not text.strip():
        return ()
    requirements = []
    for term in _split_terms(text):
        if m := _NOT_EXISTS.fullmatch(term):
            requirements.append(Requirement(m["key"], "!"))
        elif m := _SET.fullmatch(term):
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            if not values:
                raise SelectorError(f"empty value set in label selector term {term!r}")
            requirements.append(Requirement(m["key"], m["op"], values))
        elif m := _EQUALITY.fullmatch(term):
            op = "!=" if m["op"] == "!=" else "="
            requirements.append(Requirement(m["key"], op, frozenset({m["value"]})))
        elif m := _EXISTS.fullmatch(term):
            requirements.append(Requirement(m["key"], "exists"))
        else:
            raise SelectorError(f"unable to parse label selector term {term!r} in {text!r}")
    return tuple(requirements)


def parse_field_selector(text: str) -> tuple[Requirement, ...]:
    """Parse a ``fieldSelector`` query value (equality terms only, as the API server)."""
    if not text.strip():
        return ()
    requirements = []
    for term in _split_terms(text):
        m = _FIELD.fullmatch(term)
        if m is None:
            raise SelectorError(f"unable to parse field selector term {term!r} in {text!r}")
        op = "!=" if m["op"] == "!=" else "="
        requirements.append(Requirement(m["key"], op, frozenset({m["value"].strip()})))
    return tuple(requirements)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    # The API server compares the string forms; an absent field compares as "".
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which objects a list or watch request asks for."""

    resource: kmock.resource
    namespace: str | None = None
    name: str | None = None
    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()

    def matches(self, resource: kmock.resource, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` (a stored object of ``resource``) is in this selection."""
        meta = obj.get("metadata") or {}
        if resource != self.resource:
            return False
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        labels = meta.get("labels") or {}
        if not all(req.matches(labels.get(req.key)) for req in self.labels):
            return False
        return all(req.matches(_field_value(obj, req.key)) for req in self.fields)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One change, as a watch would report it, kept so that watches can resume from a version."""

    revision: int
    resource: kmock.resource
    type: str  # ADDED, MODIFIED, DELETED
    object: Obj
    previous: Obj | None  # the object before a MODIFIED change, to follow selectors in and out


@attrs.mutable(kw_only=True)
class _JournalBus(kmock.Bus[Any]):
    # kmock announces every change on one bus per resource, inside its lock: the one place where
    # a change and its resource version can be stamped together, in commit order.
    resource: kmock.resource
    record: Callable[[kmock.resource, Any], Any]

    async def put(self, *items: Any) -> None:
        await super().put(*(self.record(self.resource, item) for item in items))


class _JournalBuses(dict[kmock.resource, kmock.Bus[Any]]):
    def __init__(self, record: Callable[[kmock.resource, Any], Any]) -> None:
        super().__init__()
        self._record = record

    def __missing__(self, resource: kmock.resource) -> kmock.Bus[Any]:
        bus = self[resource] = _JournalBus(resource=resource, record=self._record)
        return bus


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad_request(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=400, reason="BadRequest", message=message)


@attrs.define(kw_only=True)
class KubeAPIEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with what KubeSpawner needs; see the module docstring."""

    journal_size: int = 10_000  # changes kept for watches resuming from a resourceVersion
    _revision: int = attrs.field(default=0, init=False)
    _journal: collections.deque[JournalEntry] = attrs.field(init=False)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _active_watches: int = attrs.field(default=0, init=False)
    _refusals: list[tuple[str, kmock.resource, str | None, kmock.KubernetesError]] = attrs.field(
        factory=list, init=False
    )

    @_journal.default
    def _journal_default(self) -> collections.deque[JournalEntry]:
        return collections.deque(maxlen=self.journal_size)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for name, info in CORE_RESOURCES.items():
            self.resources[name] = copy.deepcopy(info)
        self._buses = _JournalBuses(self._record)
        # kubernetes_asyncio's VersionApi asks for /version/, kmock only answers /version.
        self.fallback["get /version/"] << self._serve_server_version

    # --- request handling -------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is None or resource.plural is None:
            return await super()._handle(request)  # discovery and non-Kubernetes paths
        if resource not in self.resources:
            raise kmock.KubernetesResourceNotFoundError()
        for method, refused, namespace, error in self._refusals:
            # Checked before kmock stores anything: a refused create must leave no object.
            if (
                request.method.value == method
                and resource == refused
                and namespace in (None, request.namespace)
            ):
                raise error
        if request.method == kmock.method.PUT:
            raise kmock.KubernetesError(
                status=405,
                reason="MethodNotAllowed",
                message="PUT (replace) is not emulated; send a PATCH instead",
            )
        if (
            request.method == kmock.method.GET
            and request.action != kmock.action.WATCH
            and request.params.get("watch") in _TRUE
        ):
            # The request is already logged in `emulator.requests`; correcting it in place keeps
            # that log truthful, which attrs.evolve() would not.
            object.__setattr__(request, "action", kmock.action.WATCH)

        if request.action == kmock.action.CREATE:
            self._fill_on_create(request)
        key = (resource, request.namespace, request.name or "")
        deleting = (
            request.action == kmock.action.DELETE
            and key in self.objects
            and not self.objects[key].deleted
        )

        response = await super()._handle(request)

        # Only a real removal frees dependents: an object held by finalizers is still there.
        if deleting and self.objects[key].deleted:
            await self._collect_garbage(request.namespace)
        return response

    def _fill_on_create(self, request: kmock.Request) -> None:
        assert request.resource is not None
        obj = request.data
        if not isinstance(obj, dict):
            raise _bad_request("the request body must be a JSON object")
        info = self.resources[request.resource]
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        if info.namespaced:
            if request.namespace is None:
                raise kmock.KubernetesError(
                    status=404,
                    reason="NotFound",
                    message=f"{request.resource.plural} are namespaced: POST to a namespace URL",
                )
            if (meta.get("namespace") or request.namespace) != request.namespace:
                raise _bad_request(
                    "the namespace of the provided object does not match the namespace sent on"
                    " the request"
                )
            meta["namespace"] = request.namespace
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise kmock.KubernetesError(
                    status=422, reason="Invalid", message="metadata.name or generateName needed"
                )
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta.pop("resourceVersion", None)  # stamped when the change is committed, see _record
        group, version = request.resource.group, request.resource.version
        obj.setdefault("apiVersion", f"{group}/{version}" if group else version)
        if info.kind:
            obj.setdefault("kind", info.kind)

        match info.kind:
            case "Pod":
                # The API server ignores a client's status: only the kubelet reports one.
                obj["status"] = {"phase": "Pending"}
            case "Event":
                # Serialised as null, never omitted, by the real server; KubeSpawner reads them.
                for stamp in ("eventTime", "firstTimestamp", "lastTimestamp"):
                    obj.setdefault(stamp, None)
            case "Secret":
                data = obj.setdefault("data", {})
                for k, v in (obj.pop("stringData", None) or {}).items():
                    data[k] = base64.b64encode(str(v).encode()).decode()

    def _record(self, resource: kmock.resource, item: Any) -> Any:
        if not isinstance(item, dict) or not isinstance(item.get("object"), dict):
            return item
        self._revision += 1
        obj = item["object"]
        meta = dict(obj.get("metadata") or {}, resourceVersion=str(self._revision))
        stamped = dict(obj, metadata=meta)
        previous: Obj | None = None
        key = (resource, meta.get("namespace"), meta.get("name"))
        if key in self.objects:
            stored = self.objects[key]
            if item["type"] == "MODIFIED" and len(stored.history) >= 2:
                before = stored.history[-2]
                previous = before.raw if before is not None else None
            # The stored version itself must carry the new version too: GET and LIST read it.
            stored.last["metadata"] = meta
        self._journal.append(
            JournalEntry(self._revision, resource, item["type"], stamped, previous)
        )
        self._signal()
        return dict(item, object=stamped)

    def _signal(self) -> None:
        # Waiters hold the old event; a fresh one is ready for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _collect_garbage(self, namespace: str | None) -> None:
        # Repeat until stable: a collected dependent may own further objects.
        collected = True
        while collected:
            collected = False
            async with self._lock:
                live = {
                    obj.raw.get("metadata", {}).get("uid")
                    for (_, ns, _), obj in self.objects.items()
                    if ns == namespace and not obj.deleted
                }
                for (resource, ns, _), obj in list(self.objects.items()):
                    if ns != namespace or obj.deleted:
                        continue
                    owners = obj.raw.get("metadata", {}).get("ownerReferences") or []
                    if owners and all(ref.get("uid") not in live for ref in owners):
                        raw = obj.raw
                        obj.delete()
                        await self._buses[resource].put({"type": "DELETED", "object": raw})
                        collected = True

    def _selection(self, request: kmock.Request) -> Selection:
        assert request.resource is not None
        try:
            labels = parse_label_selector(request.params.get("labelSelector", ""))
            fields = parse_field_selector(request.params.get("fieldSelector", ""))
        except SelectorError as e:
            raise _bad_request(str(e)) from None
        return Selection(request.resource, request.namespace, request.name, labels, fields)

    def _select(self, selection: Selection) -> list[Obj]:
        return [
            obj.raw
            for (resource, _, _), obj in self.objects.items()
            if not obj.deleted and selection.matches(resource, obj.raw)
        ]

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        selection = self._selection(request)
        info = self.resources[selection.resource]
        async with self._lock:
            items = self._select(selection)
            revision = self._revision
        group, version = selection.resource.group, selection.resource.version
        return {
            "apiVersion": f"{group}/{version}" if group else version,
            "kind": f"{info.kind or ''}List",
            "metadata": {"resourceVersion": str(revision)},
            "items": items,
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        # Everything that can be refused is checked before the first chunk, so that a mistake
        # is an HTTP 400 and not an ERROR event in an already started stream.
        selection = self._selection(request)
        try:
            timeout = int(request.params.get("timeoutSeconds", "0"))
            since = request.params.get("resourceVersion", "")
            start = int(since) if since not in ("", "0") else None
        except ValueError:
            raise _bad_request("timeoutSeconds and resourceVersion must be integers") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout > 0 else None

        self._active_watches += 1
        try:
            yield b""  # sends the headers now, as a real server does

            async with self._lock:
                if start is None:
                    cursor = self._revision
                    initial = [{"type": "ADDED", "object": o} for o in self._select(selection)]
                else:
                    cursor = start
                    initial = []
                    oldest = self._journal[0].revision if self._journal else self._revision + 1
                    if start < self._revision and oldest > start + 1:
                        initial = [self._expired(start, oldest)]
            for event in initial:
                yield event
            if initial and initial[0]["type"] == "ERROR":
                return

            while not self._closing:
                changed = self._changed
                if self._journal and self._journal[0].revision > cursor + 1:
                    # This watcher fell so far behind that the journal forgot what it missed.
                    yield self._expired(cursor, self._journal[0].revision)
                    return
                entries = [e for e in self._journal if e.revision > cursor]
                for entry in entries:
                    cursor = entry.revision
                    event = self._as_seen_by(selection, entry)
                    if event is not None:
                        yield event
                if entries:
                    continue  # more may have been committed while yielding
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    async with asyncio.timeout(remaining):
                        await changed.wait()
                except TimeoutError:
                    return
        finally:
            self._active_watches -= 1

    @staticmethod
    def _as_seen_by(selection: Selection, entry: JournalEntry) -> Obj | None:
        now_in = selection.matches(entry.resource, entry.object)
        if entry.type != "MODIFIED":
            return {"type": entry.type, "object": entry.object} if now_in else None
        was_in = entry.previous is not None and selection.matches(entry.resource, entry.previous)
        if now_in:
            return {"type": "MODIFIED" if was_in else "ADDED", "object": entry.object}
        return {"type": "DELETED", "object": entry.object} if was_in else None

    @staticmethod
    def _expired(start: int, oldest: int) -> Obj:
        return {
            "type": "ERROR",
            "object": {
                "apiVersion": "v1",
                "kind": "Status",
                "metadata": {},
                "status": "Failure",
                "reason": "Expired",
                "code": 410,
                "message": f"too old resource version: {start} ({oldest - 1})",
            },
        }

    # --- for tests --------------------------------------------------------------------------

    def refuse(
        self,
        method: str,
        resource: str,
        namespace: str | None,
        *,
        status: int,
        reason: str,
        message: str,
    ) -> None:
        """Answer every ``method`` request on ``resource`` (in ``namespace``, or any) with an error.

        For what the emulator cannot know, as the real server answers it: a namespace that does
        not exist (404 ``NotFound``) or a verb RBAC does not allow (403 ``Forbidden``).
        """
        error = kmock.KubernetesError(status=status, reason=reason, message=message)
        self._refusals.append((method.upper(), kmock.resource(resource), namespace, error))

    @property
    def revision(self) -> int:
        """The current ``resourceVersion`` of the whole emulated cluster."""
        return self._revision

    def get_object(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """A copy of a stored object exactly as the API serves it, or ``None`` if absent."""
        key = (kmock.resource(resource), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def list_objects(
        self, resource: str, namespace: str | None = None, label_selector: str = ""
    ) -> list[Obj]:
        """Copies of the stored objects of ``resource``, filtered like a LIST request."""
        selection = Selection(
            kmock.resource(resource), namespace, labels=parse_label_selector(label_selector)
        )
        return copy.deepcopy(self._select(selection))

    def get_pod(self, namespace: str, name: str) -> Obj | None:
        """A copy of the stored pod, or ``None`` if there is none."""
        return self.get_object("v1/pods", namespace, name)

    def list_pods(self, namespace: str | None = None, label_selector: str = "") -> list[Obj]:
        """Copies of the stored pods, optionally of one namespace and matching a selector."""
        return self.list_objects("v1/pods", namespace, label_selector)

    async def wait_for_object(
        self, resource: str, namespace: str | None, name: str, *, timeout: float = 5.0
    ) -> Obj:
        """Wait until the object exists and return a copy; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            while (obj := self.get_object(resource, namespace, name)) is None:
                await self._changed.wait()
        return obj

    async def play_kubelet(
        self, name: str, namespace: str, *, pod_ip: str = "127.0.0.1", timeout: float = 5.0
    ) -> Obj:
        """Do what a kubelet does once a pod's containers run; returns the patched pod.

        Waits up to ``timeout`` seconds for the pod to be created, then PATCHes its ``status``
        subresource over HTTP (so watches see it) to ``phase: Running`` with ``podIP`` and a
        ready, running status for every container of its spec.
        """
        pod = await self.wait_for_object("v1/pods", namespace, name, timeout=timeout)
        now = _now()
        containers = pod.get("spec", {}).get("containers") or [{"name": "notebook"}]
        status = {
            "phase": "Running",
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "hostIP": pod_ip,
            "startTime": now,
            "conditions": [
                {"type": kind, "status": "True", "lastTransitionTime": now}
                for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            # kubernetes_asyncio's V1ContainerStatus requires image, imageID and restartCount:
            # without them a typed watch (KubeSpawner's reflectors) fails to deserialise the pod.
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
                for c in containers
            ],
        }
        return await self._patch_status(namespace, name, status)

    async def play_exit(self, name: str, namespace: str, *, exit_code: int = 0) -> Obj:
        """Make every container of a running pod terminate with ``exit_code``."""
        pod = await self.wait_for_object("v1/pods", namespace, name)
        now = _now()
        statuses = pod.get("status", {}).get("containerStatuses") or []
        status = {
            "phase": "Failed" if exit_code else "Succeeded",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
            "containerStatuses": [
                dict(
                    s,
                    ready=False,
                    started=False,
                    state={
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Error" if exit_code else "Completed",
                            "finishedAt": now,
                        }
                    },
                )
                for s in statuses
            ],
        }
        return await self._patch_status(namespace, name, status)

    async def _patch_status(self, namespace: str, name: str, status: Obj) -> Obj:
        url = f"/api/v1/namespaces/{namespace}/pods/{name}/status"
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.patch(url, data=json.dumps({"status": status}), headers=headers) as resp:
            body: Obj = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"PATCH {url} answered {resp.status}: {body.get('message')}")
            return body

    def unexpected_errors(self) -> list[Exception]:
        """Exceptions raised while serving, other than the API errors it answers on purpose.

        Anything here is a gap or a bug of the emulator (kmock answers it with a 500); the
        pytest fixture fails the test with them. Only valid while the emulator is running.
        """
        return [e for e in self.errors if not isinstance(e, kmock.KubernetesError)]

    async def close_watches(self, *, timeout: float = 2.0) -> None:
        """End every open watch stream, so that the HTTP server can stop without waiting."""
        self._closing = True
        self._signal()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._active_watches:
                    await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_emulator(
    emulator: KubeAPIEmulator | None = None, *, answer_timeout: float = 5.0
) -> AsyncIterator[tuple[KubeAPIEmulator, str]]:
    """Serve an emulator on 127.0.0.1 on a free port; yields it and its base URL.

    Returns only once the server answers ``GET /version``; on exit it ends open watches first,
    then stops the server, so stopping never waits for a client.
    """
    emulator = emulator if emulator is not None else KubeAPIEmulator()
    async with emulator, kmock.Server(emulator, host="127.0.0.1") as server:
        url = f"http://{server.host}:{server.port}"
        try:
            async with asyncio.timeout(answer_timeout):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with server.client.get("/version") as resp:
                            if resp.status == 200:
                                break
                    await asyncio.sleep(0.05)
            yield emulator, url
        finally:
            await emulator.close_watches()
