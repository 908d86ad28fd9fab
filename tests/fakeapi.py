"""A small fake Kubernetes API server for watch and relist tests.

It serves list (with limit/continue) and watch (chunked JSON lines, bookmarks, 410 for a
compacted resourceVersion) for Namespaces, Services and ServiceEntries, over plain HTTP on
loopback, and lets a test inject the faults a real cluster has: a restart, a closed stream,
compaction, RBAC refusals, a missing CRD, and a ServiceEntry with garbage in its spec.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import ssl
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jsonpatch
import jsonpointer

PATHS = {
    "/api/v1/namespaces": ("Namespace", "v1"),
    "/api/v1/services": ("Service", "v1"),
    "/apis/networking.istio.io/v1/serviceentries": ("ServiceEntry", "networking.istio.io/v1"),
    "/apis/seguard.io/v1alpha1/serviceentrypolicies": ("ServiceEntryPolicy", "seguard.io/v1alpha1"),
    "/apis/wgpolicyk8s.io/v1alpha2/policyreports": ("PolicyReport", "wgpolicyk8s.io/v1alpha2"),
}
# Namespaced kinds a client creates, replaces and deletes one by one (the list above is across
# namespaces): their path in a namespace.
WRITABLE = {"PolicyReport": r"/apis/wgpolicyk8s\.io/v1alpha2/namespaces/([^/]+)/policyreports"}
# Kinds with a status subresource: an update keeps the status, a change of spec bumps the
# generation, and PATCH .../status changes the status alone.
WITH_STATUS = {"ServiceEntryPolicy"}
KIND_PATH = {kind: path for path, (kind, _) in PATHS.items()}


class Cluster:
    """The state: objects by kind, a global resourceVersion, and the event log."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.version = 100
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k: {} for k in KIND_PATH}
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, kind, type, obj)
        self.compacted = 0  # watches from a version below this get 410
        self.forbidden: set[tuple[str, str]] = set()  # (kind, verb)
        self.missing: set[str] = set()  # kinds whose resource is not served (no CRD)
        self.generation = 0  # bumped to close every open watch stream
        self.requests: list[tuple[str, str]] = []  # (kind, "list" | "watch")
        # Webhook configurations by (mutating|validating, name), and the dry-run creates seen.
        self.webhooks: dict[tuple[str, str], dict[str, Any]] = {}
        self.patches: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.forbid_patch = False
        # Leases by (namespace, name), and Events as posted.
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.posted_events: list[dict[str, Any]] = []
        self.forbid_events = False
        self.cut_lists = 0  # the next N list answers break off halfway through their body
        self.bookmarks: dict[str, int] = {}  # kind -> the last version bookmarked
        self.log: list[tuple[str, str]] = []  # (method, path with query) of every request
        # Pods by (namespace, name): their labels and each container's log, for `kubectl logs`.
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        # (token, name, patch) of every status patch: the token says which client sent it.
        self.status_patches: list[tuple[str, str, Any]] = []

    def add_pod(
        self, namespace: str, name: str, labels: dict[str, str], logs: dict[str, str]
    ) -> None:
        """A running pod whose containers wrote ``logs`` (container name to text)."""
        with self.lock:
            self.pods[(namespace, name)] = {"labels": labels, "logs": logs}

    def _bump(self) -> int:
        self.version += 1
        return self.version

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = obj["kind"]
        with self.lock:
            meta = obj.setdefault("metadata", {})
            key = (meta.get("namespace", ""), meta["name"])
            existed = key in self.objects[kind]
            if kind in WITH_STATUS:
                old = self.objects[kind].get(key)
                meta.setdefault("uid", f"uid-{kind.lower()}-{meta['name']}")
                if old is None:
                    meta["generation"] = 1
                    obj.pop("status", None)
                else:
                    changed = old.get("spec") != obj.get("spec")
                    meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
                    meta["uid"] = old["metadata"]["uid"]
                    if "status" in old:
                        obj["status"] = copy.deepcopy(old["status"])
            meta["resourceVersion"] = str(self._bump())
            meta.setdefault("creationTimestamp", "2026-11-23T10:00:00Z")
            self.objects[kind][key] = copy.deepcopy(obj)
            self.events.append(
                (self.version, kind, "MODIFIED" if existed else "ADDED", copy.deepcopy(obj))
            )
            self.lock.notify_all()
        return obj

    def delete(self, kind: str, namespace: str, name: str, *, silently: bool = False) -> None:
        """Remove an object; ``silently`` leaves no event (as if the watch was down and the
        history compacted)."""
        with self.lock:
            obj = self.objects[kind].pop((namespace, name))
            obj["metadata"]["resourceVersion"] = str(self._bump())
            if not silently:
                self.events.append((self.version, kind, "DELETED", obj))
            else:
                self.compacted = self.version
            self.lock.notify_all()

    def compact(self) -> None:
        with self.lock:
            self.compacted = self.version
            self.lock.notify_all()

    def close_watches(self) -> None:
        with self.lock:
            self.generation += 1
            self.lock.notify_all()

    def count(self, kind: str, verb: str) -> int:
        with self.lock:
            return sum(1 for k, v in self.requests if k == kind and v == verb)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._json(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    def _admission_path(self) -> tuple[str, str] | None:
        match = re.fullmatch(
            r"/apis/admissionregistration\.k8s\.io/v1/(mutating|validating)webhookconfigurations/([^/?]+)",
            urlparse(self.path).path,
        )
        return (match.group(1), match.group(2)) if match else None

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length", "0") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def _status_path(self) -> tuple[str, str] | None:
        for path, (kind, _) in PATHS.items():
            match = re.fullmatch(re.escape(path) + r"/([^/]+)/status", urlparse(self.path).path)
            if match and kind in WITH_STATUS:
                return kind, match.group(1)
        return None

    def _patch_status(self, kind: str, name: str) -> None:
        """A JSON merge patch (RFC 7386) of an object's status, as the status subresource takes."""
        cluster = self.server.cluster
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            self._status(415, "UnsupportedMediaType", "expected application/merge-patch+json")
            return
        patch = self._body()
        with cluster.lock:
            if (kind, "patch") in cluster.forbidden:
                self._status(403, "Forbidden", f"{kind.lower()}s/status is forbidden")
                return
            obj = cluster.objects[kind].get(("", name))
            if obj is None:
                self._status(404, "NotFound", f'{kind.lower()} "{name}" not found')
                return
            status = _merge(obj.get("status", {}), (patch or {}).get("status", {}))
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = str(cluster._bump())
            cluster.events.append((cluster.version, kind, "MODIFIED", copy.deepcopy(obj)))
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            cluster.status_patches.append((token, name, copy.deepcopy(patch)))
            cluster.lock.notify_all()
            body = copy.deepcopy(obj)
        self._json(200, body)

    def do_PATCH(self) -> None:
        with self.server.cluster.lock:
            self.server.cluster.log.append(("PATCH", self.path))
        status_of = self._status_path()
        if status_of is not None:
            self._patch_status(*status_of)
            return
        key = self._admission_path()
        cluster = self.server.cluster
        ops = self._body()
        with cluster.lock:
            if key is None or key not in cluster.webhooks:
                self._status(404, "NotFound", "not found")
                return
            if cluster.forbid_patch:
                self._status(403, "Forbidden", f"{key[0]}webhookconfigurations is forbidden")
                return
            try:
                cluster.webhooks[key] = jsonpatch.apply_patch(cluster.webhooks[key], ops)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                self._status(422, "Invalid", str(exc))
                return
            cluster.patches.append((key[0], key[1], ops))
            body = copy.deepcopy(cluster.webhooks[key])
        self._json(200, body)

    def _lease_path(self) -> tuple[str, str | None] | None:
        match = re.fullmatch(
            r"/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(?:/([^/?]+))?",
            urlparse(self.path).path,
        )
        return (match.group(1), match.group(2)) if match else None

    def _writable(self) -> tuple[str, str, str] | None:
        """(kind, namespace, name) of a write to one of the WRITABLE kinds; name "" to create."""
        path = urlparse(self.path).path
        for kind, pattern in WRITABLE.items():
            match = re.fullmatch(pattern + r"(?:/([^/]+))?", path)
            if match:
                return kind, match.group(1), match.group(2) or ""
        return None

    def _write(self, method: str, kind: str, namespace: str, name: str) -> None:
        """Create (POST), replace (PUT, with the resourceVersion read) or DELETE one object."""
        cluster = self.server.cluster
        verb = {"POST": "create", "PUT": "update", "DELETE": "delete"}[method]
        obj = self._body() if method != "DELETE" else None
        with cluster.lock:
            if kind in cluster.missing:
                self._status(404, "NotFound", "the server could not find the requested resource")
                return
            if (kind, verb) in cluster.forbidden:
                self._status(403, "Forbidden", f"{kind.lower()}s is forbidden")
                return
            held = cluster.objects[kind]
            key = (namespace, name or (obj or {}).get("metadata", {}).get("name", ""))
            current = held.get(key)
            if method == "POST" and current is not None:
                self._status(409, "AlreadyExists", f'{kind.lower()}s "{key[1]}" already exists')
                return
            if method != "POST" and current is None:
                self._status(404, "NotFound", f'{kind.lower()}s "{key[1]}" not found')
                return
            if method == "PUT":
                assert obj is not None
                sent = obj.get("metadata", {}).get("resourceVersion")
                if sent != current["metadata"]["resourceVersion"]:  # type: ignore[index]
                    self._status(409, "Conflict", "the object has been modified")
                    return
            if method == "DELETE":
                del held[key]
                cluster._bump()
                self._json(200, {"kind": "Status", "status": "Success"})
                return
            assert obj is not None
            obj.setdefault("metadata", {})["namespace"] = namespace
            obj["metadata"]["resourceVersion"] = str(cluster._bump())
            held[key] = copy.deepcopy(obj)
        self._json(201 if method == "POST" else 200, obj)

    def do_DELETE(self) -> None:
        with self.server.cluster.lock:
            self.server.cluster.log.append(("DELETE", self.path))
        target = self._writable()
        if target is None or not target[2]:
            self._status(405, "MethodNotAllowed", "not here")
            return
        self._write("DELETE", *target)

    def do_PUT(self) -> None:
        with self.server.cluster.lock:
            self.server.cluster.log.append(("PUT", self.path))
        target = self._writable()
        if target is not None and target[2]:
            self._write("PUT", *target)
            return
        lease = self._lease_path()
        cluster = self.server.cluster
        obj = self._body()
        if lease is None or lease[1] is None:
            self._status(405, "MethodNotAllowed", "not here")
            return
        with cluster.lock:
            current = cluster.leases.get((lease[0], lease[1]))
            if current is None:
                self._status(404, "NotFound", "lease not found")
                return
            if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                self._status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version",
                )
                return
            obj["metadata"]["resourceVersion"] = str(cluster._bump())
            cluster.leases[(lease[0], lease[1])] = copy.deepcopy(obj)
        self._json(200, obj)

    def do_POST(self) -> None:
        with self.server.cluster.lock:
            self.server.cluster.log.append(("POST", self.path))
        target = self._writable()
        if target is not None and not target[2]:
            self._write("POST", *target)
            return
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        lease = self._lease_path()
        if lease is not None:
            obj = self._body()
            with self.server.cluster.lock:
                key = (lease[0], obj["metadata"]["name"])
                if key in self.server.cluster.leases:
                    self._status(409, "AlreadyExists", "leases already exists")
                    return
                obj["metadata"]["resourceVersion"] = str(self.server.cluster._bump())
                self.server.cluster.leases[key] = copy.deepcopy(obj)
            self._json(201, obj)
            return
        events = re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", url.path)
        if events is not None:
            obj = self._body()
            with self.server.cluster.lock:
                if self.server.cluster.forbid_events:
                    self._status(403, "Forbidden", "events is forbidden")
                    return
                self.server.cluster.posted_events.append(obj)
            self._json(201, obj)
            return
        match = re.fullmatch(
            r"/apis/networking\.istio\.io/v1/namespaces/([^/]+)/serviceentries", url.path
        )
        obj = self._body()
        if match is None or query.get("dryRun") != "All":
            self._status(
                405, "MethodNotAllowed", "this fake takes only dry-run ServiceEntry creates"
            )
            return
        with self.server.cluster.lock:
            hooks = [
                h
                for (kind, _), config in self.server.cluster.webhooks.items()
                if kind == "validating"
                for h in config.get("webhooks", [])
            ]
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"fake-{time.monotonic_ns()}",
                "kind": {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"},
                "requestKind": {
                    "group": "networking.istio.io",
                    "version": "v1",
                    "kind": "ServiceEntry",
                },
                "namespace": match.group(1),
                "name": obj["metadata"]["name"],
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:seguard:seguard"},
                "object": obj,
                "dryRun": True,
            },
        }
        for hook in hooks:
            client = hook.get("clientConfig", {})
            try:
                bundle = base64.b64decode(client.get("caBundle", "")).decode()
                context = ssl.create_default_context(cadata=bundle or None)
                request = urllib.request.Request(
                    client["url"],
                    data=json.dumps(review).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5, context=context) as response:
                    answer = json.loads(response.read())["response"]
            except Exception as exc:
                if hook.get("failurePolicy", "Fail") == "Fail":
                    self._status(
                        500,
                        "InternalError",
                        f'Internal error occurred: failed calling webhook "{hook["name"]}": {exc}',
                    )
                    return
                continue  # failurePolicy Ignore: as if the webhook allowed it
            if not answer.get("allowed"):
                status = answer.get("status", {})
                code = int(status.get("code", 403))
                self._status(
                    code,
                    "Forbidden",
                    f'admission webhook "{hook["name"]}" denied the request: {status.get("message", "")}',
                )
                return
        self._json(201, obj)

    def do_GET(self) -> None:
        with self.server.cluster.lock:
            self.server.cluster.log.append(("GET", self.path))
        if self._discovery_or_pods():
            return
        lease = self._lease_path()
        if lease is not None and lease[1] is not None:
            with self.server.cluster.lock:
                found = copy.deepcopy(self.server.cluster.leases.get((lease[0], lease[1])))
            if found is None:
                self._status(404, "NotFound", "leases not found")
            else:
                self._json(200, found)
            return
        key = self._admission_path()
        if key is not None:
            with self.server.cluster.lock:
                config = copy.deepcopy(self.server.cluster.webhooks.get(key))
            if config is None:
                self._status(404, "NotFound", "not found")
            else:
                self._json(200, config)
            return
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path not in PATHS:
            self._status(404, "NotFound", "the server could not find the requested resource")
            return
        kind, api_version = PATHS[url.path]
        cluster = self.server.cluster
        watching = query.get("watch") in ("true", "1")
        verb = "watch" if watching else "list"
        with cluster.lock:
            cluster.requests.append((kind, verb))
            if kind in cluster.missing:
                self._status(404, "NotFound", "the server could not find the requested resource")
                return
            if (kind, verb) in cluster.forbidden:
                resource = url.path.rsplit("/", 1)[1]
                self._status(
                    403,
                    "Forbidden",
                    f'{resource} is forbidden: User "system:serviceaccount:seguard:seguard" cannot {verb} resource "{resource}" at the cluster scope',
                )
                return
        if watching:
            self._watch(kind, query)
        else:
            self._list(kind, api_version, query)

    def _discovery_or_pods(self) -> bool:
        """What ``kubectl logs -l`` asks first: the version, discovery, the pods, their logs."""
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/version":
            self._json(200, {"major": "1", "minor": "36", "gitVersion": "v1.36.0"})
        elif url.path == "/api":
            self._json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})  # fmt: skip
        elif url.path == "/apis":
            self._json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        elif url.path == "/api/v1":
            resources = [
                {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list", "watch"]}
                for name, namespaced, kind in (("namespaces", False, "Namespace"), ("pods", True, "Pod"), ("pods/log", True, "Pod"), ("services", True, "Service"))
            ]  # fmt: skip
            self._json(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})  # fmt: skip
        elif match := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", url.path):
            self._json(200, self._pods(match.group(1), query.get("labelSelector", "")))
        elif match := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)(/log)?", url.path):
            namespace, name, log = match.groups()
            with self.server.cluster.lock:
                pod = self.server.cluster.pods.get((namespace, name))
            if pod is None:
                self._status(404, "NotFound", f'pods "{name}" not found')
            elif log:
                container = query.get("container") or next(iter(pod["logs"]))
                lines = pod["logs"].get(container, "").splitlines(keepends=True)
                tail = int(query.get("tailLines", "-1"))
                if tail >= 0:
                    lines = lines[len(lines) - tail :] if tail else []
                if query.get("timestamps") == "true":
                    lines = [f"2026-12-03T10:00:{i % 60:02d}.000000000Z {line}" for i, line in enumerate(lines)]  # fmt: skip
                data = "".join(lines).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self._json(200, self._pod(namespace, name, pod))
        else:
            return False
        return True

    @staticmethod
    def _pod(namespace: str, name: str, pod: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": pod["labels"], "uid": f"uid-{name}", "resourceVersion": "1"},
            "spec": {"containers": [{"name": c, "image": "seguard"} for c in pod["logs"]]},
            "status": {"phase": "Running"},
        }  # fmt: skip

    def _pods(self, namespace: str, selector: str) -> dict[str, Any]:
        wanted = dict(term.split("=", 1) for term in selector.split(",") if "=" in term)
        with self.server.cluster.lock:
            pods = dict(self.server.cluster.pods)
        items = [
            self._pod(ns, name, pod)
            for (ns, name), pod in sorted(pods.items())
            if ns == namespace and all(pod["labels"].get(k) == v for k, v in wanted.items())
        ]
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}  # fmt: skip

    def _list(self, kind: str, api_version: str, query: dict[str, str]) -> None:
        cluster = self.server.cluster
        limit = int(query.get("limit", "0") or 0)
        start = int(query.get("continue", "0") or 0)
        with cluster.lock:
            keys = sorted(cluster.objects[kind])
            wanted = dict(
                term.split("=", 1)
                for term in query.get("labelSelector", "").split(",")
                if "=" in term
            )
            if wanted:  # equality terms only, as the code here uses them
                keys = [
                    key for key in keys
                    if all((cluster.objects[kind][key]["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
                ]  # fmt: skip
            chosen = keys[start : start + limit] if limit else keys[start:]
            page = [copy.deepcopy(cluster.objects[kind][key]) for key in chosen]
            total = len(keys)
            version = str(cluster.version)
        for item in page:  # list items carry no kind or apiVersion, as from a real server
            item.pop("kind", None)
            item.pop("apiVersion", None)
        nxt = start + len(page)
        meta: dict[str, Any] = {"resourceVersion": version}
        if limit and nxt < total:
            meta["continue"] = str(nxt)
        body = {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": page}
        with cluster.lock:
            cut = cluster.cut_lists > 0
            cluster.cut_lists -= 1 if cut else 0
        if cut:  # promise the whole body, send half of it, and hang up
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._json(200, body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, kind: str, query: dict[str, str]) -> None:
        cluster = self.server.cluster
        since = int(query.get("resourceVersion", "0") or 0)
        timeout = float(query.get("timeoutSeconds", "300"))
        bookmarks = query.get("allowWatchBookmarks") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        with cluster.lock:
            generation = cluster.generation
        sent = since
        try:
            while time.monotonic() < deadline and not self.server.stopping:
                with cluster.lock:
                    if generation != cluster.generation:
                        break  # the test closed the stream
                    if sent < cluster.compacted:
                        status = {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "reason": "Expired",
                            "code": 410,
                            "message": f"too old resource version: {sent} ({cluster.compacted})",
                        }
                        self._chunk(
                            json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"
                        )
                        break
                    pending = [
                        (rv, t, o) for rv, k, t, o in cluster.events if k == kind and rv > sent
                    ]
                    if not pending:
                        cluster.lock.wait(0.1)
                        mine = any(k == kind and rv > sent for rv, k, _, _ in cluster.events)
                        if (
                            bookmarks
                            and self.server.bookmark_every
                            and not mine
                            and cluster.version > sent
                        ):
                            # Nothing of this kind up to the current version: say so.
                            sent = cluster.version
                            cluster.bookmarks[kind] = sent
                            bookmark = {
                                "kind": kind,
                                "apiVersion": "v1",
                                "metadata": {"resourceVersion": str(sent)},
                            }
                            self._chunk(
                                json.dumps({"type": "BOOKMARK", "object": bookmark}).encode()
                                + b"\n"
                            )
                        continue
                for rv, event_type, obj in pending:
                    self._chunk(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")
                    sent = rv
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], cluster: Cluster) -> None:
        self.cluster = cluster
        self.stopping = False
        self.bookmark_every = False
        super().__init__(address, _Handler)


class FakeApiServer:
    def __init__(self, cluster: Cluster | None = None) -> None:
        self.cluster = cluster or Cluster()
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = _Server(("127.0.0.1", self.port), self.cluster)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stopping = True
        self._server.shutdown()
        self._server.server_close()
        with self.cluster.lock:
            self.cluster.lock.notify_all()
        self._server = None

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop and start again on the same port, as an API server restart looks to a client."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def set_bookmarks(self, on: bool) -> None:
        assert self._server is not None
        self._server.bookmark_every = on

    def kubeconfig(self, path: Path, *, token: str = "not-a-secret") -> Path:
        """A kubeconfig for this server; ``token`` tells one client's requests from another's
        (the status patches record it)."""
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": token}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        return path
