"""The Kubernetes API client (shell): the official client's configuration, authentication and
TLS, with raw JSON bodies (orjson), never its typed models (about five times the cost).

Every part of seguard that talks to the API server goes through ``Transport``: the registry's
reflector (``webhook.sources.kubernetes``), the Events, the safe rollout and the scan's Lease.
An answer that is not a success becomes an error in one place, ``status_error``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

# The API server ends a watch after timeoutSeconds; a fresh watch from the last resourceVersion
# is cheap, and a bounded watch notices a silently dead connection. client-go picks 5 to 10 min.
WATCH_TIMEOUT_S = 300
# Pages of 500 objects keep each list response small (the API server's default chunk size).
PAGE_SIZE = 500
CONNECT_TIMEOUT_S = 10.0
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    api_version: str
    path: str
    group: str
    plural: str

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


class ClusterError(Exception):
    """A failure talking to the API server, as one line that says what to do."""


class Forbidden(ClusterError):
    """RBAC does not allow a verb on a resource."""


class NotFound(ClusterError):
    """The resource is not served (for ServiceEntries: the CRD is not installed)."""


class Gone(Exception):
    """The resourceVersion is too old (410): list again."""


def status_error(
    status: int, message: str, *, verb: str, what: str, where: str = "", grant: str = ""
) -> Exception:
    """The error an answer of the API server that is not a success (status 300 and over)
    stands for: the one mapping from HTTP status to error. ``verb`` and ``what`` say what was
    asked (``patch``, ``mutatingwebhookconfigurations seguard``), ``where`` its scope (``at the
    cluster scope``, ``in namespace team-a``); ``grant`` is what the service account lacks when
    the answer is 403 (by default, ``verb`` on ``what``)."""
    detail = f" ({message})" if message else ""
    if status == 401:
        return ClusterError(f"the API server refused the credentials (401){detail}")
    if status == 403:
        needed = grant or f"{verb} on {what}"
        scope = f" {where}" if where else ""
        return Forbidden(
            f"RBAC forbids {verb} on {what}{scope}; grant the webhook's service account "
            f"{needed}{detail}"
        )
    if status == 404:
        return NotFound(f"{what} is not served by the API server or does not exist{detail}")
    if status == 410:
        return Gone(message)
    return ClusterError(f"{verb} {what} failed with HTTP {status}{detail}")


# --- talking to the API server ---------------------------------------------------------------


class Transport:
    """GET requests through the official client's configuration, authentication and TLS, with
    raw bodies: ``param_serialize`` builds the request, ``call_api`` sends it unparsed."""

    def __init__(self, api_client: Any) -> None:
        self.api = api_client

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def _get(self, path: str, query: list[tuple[str, str]], read_timeout: float) -> Any:
        return self._send("GET", path, query, read_timeout=read_timeout)

    def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        *,
        read_timeout: float,
        body: object = None,
        content_type: str | None = None,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        header_params = {"Accept": "application/json"}
        if content_type is not None:
            header_params["Content-Type"] = content_type
        method, url, headers, _, post = self.api.param_serialize(
            method,
            path,
            query_params=query,
            header_params=header_params,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(
                method,
                url,
                header_params=headers,
                body=body,
                post_params=post,
                _request_timeout=(CONNECT_TIMEOUT_S, read_timeout),
            )
        except ApiException as exc:
            raise ClusterError(
                f"cannot reach the API server at {self.host}: {exc.reason}"
            ) from None
        except Exception as exc:  # urllib3 connection errors, timeouts
            raise ClusterError(
                f"cannot reach the API server at {self.host}: {type(exc).__name__}: {exc}"
            ) from None
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        """One request with a JSON body (the client serialises it); returns the status and the
        decoded answer."""
        response = self._send(
            method,
            path,
            query or [],
            read_timeout=30,
            body=body,
            content_type=content_type if body is not None else None,
        )
        raw = self._read(response, f"{method} {path}") or b"{}"
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            decoded = {"message": raw[:300].decode(errors="replace")}
        return int(response.status), decoded if isinstance(decoded, dict) else {}

    def call(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        what: str,
        where: str = "",
        grant: str = "",
        body: object = None,
        content_type: str = "application/json",
        expected: tuple[int, ...] = (),
        query: list[tuple[str, str]] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """``request``, with an answer that is neither a success nor one of ``expected`` raised
        as its error (``status_error``)."""
        status, answer = self.request(
            method, path, query=query, body=body, content_type=content_type
        )
        if status < 300 or status in expected:
            return status, answer
        message = str(answer.get("message", ""))
        raise status_error(status, message, verb=verb, what=what, where=where, grant=grant)

    def _read(self, response: Any, what: str) -> bytes:
        """The whole body. The client reads it lazily, so a connection cut in the middle of it
        surfaces here, as urllib3's own error: make it a ClusterError like any other."""
        try:
            data: bytes = response.read()
        except Exception as exc:
            raise ClusterError(
                f"{what}: the connection to {self.host} broke while reading the answer "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return data

    def _check(self, response: Any, verb: str, resource: Resource) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        data = self._read(response, f"{verb} {resource.qualified}") or b""
        try:
            message = str(orjson.loads(data).get("message", ""))
        except (orjson.JSONDecodeError, AttributeError):
            message = data[:200].decode(errors="replace")
        raise status_error(
            status,
            message,
            verb=verb,
            what=resource.qualified,
            where="at the cluster scope",
        )

    def list(self, resource: Resource, *, continue_token: str = "") -> dict[str, Any]:
        query = [("limit", str(PAGE_SIZE))]
        if continue_token:
            query.append(("continue", continue_token))
        response = self._get(resource.path, query, read_timeout=60)
        self._check(response, "list", resource)
        try:
            page: dict[str, Any] = orjson.loads(self._read(response, f"list {resource.qualified}"))
        except orjson.JSONDecodeError as exc:
            raise ClusterError(
                f"list {resource.qualified}: the API server sent bad JSON ({exc})"
            ) from None
        return page

    def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        on_open: Callable[[Any], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events of a watch; ``on_open`` receives the raw response, so another thread can shut
        it down to end a blocked read."""
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(WATCH_TIMEOUT_S)),
        ]
        # The read timeout outlasts the server's own timeout: silence longer than that means the
        # connection is dead.
        response = self._get(resource.path, query, read_timeout=WATCH_TIMEOUT_S + 30)
        self._check(response, "watch", resource)
        raw = response.response
        if on_open is not None:
            on_open(raw)
        try:
            buffer = b""
            for chunk in raw.stream(65536, decode_content=True):
                buffer += chunk
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        break
                    line, buffer = buffer[:newline], buffer[newline + 1 :]
                    if line.strip():
                        yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ClusterError(
                f"watch {resource.qualified}: bad JSON in the stream ({exc})"
            ) from None
        except ClusterError:
            raise
        except Exception as exc:  # the connection dropped mid-stream
            raise ClusterError(
                f"watch {resource.qualified} broke: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            raw.release_conn()


def find_kubeconfig(explicit: Path | None) -> Path | None:
    """The kubeconfig to use: the flag, else $KUBECONFIG's first existing file, else
    ~/.kube/config if it exists. None means in-cluster (if in a pod) or no cluster at all."""
    if explicit is not None:
        if not explicit.exists():
            raise ClusterError(f"kubeconfig {explicit} does not exist")
        return explicit
    for candidate in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    default = Path.home() / ".kube" / "config"
    return default if default.exists() else None


def cluster_to_read(explicit: Path | None, *, other_sources: bool) -> tuple[bool, Path | None]:
    """Whether to read a cluster, and through which kubeconfig (None: the pod's service
    account): ``--kubeconfig`` always; otherwise, when no other source (``--registry-dir``) is
    given, a kubeconfig in $KUBECONFIG or ~/.kube/config, or the pod's service account.
    ``serve``, ``scan`` and ``registry`` all ask this one function."""
    if explicit is not None:
        return True, find_kubeconfig(explicit)
    if other_sources:
        return False, None
    found = find_kubeconfig(None)
    if found is not None:
        return True, found
    return in_cluster(), None


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.exists()


class _Client(NamedTuple):
    Configuration: Any
    ApiClient: Any
    ConfigException: type[Exception]


def _client() -> _Client:
    """The official client's Configuration and ApiClient, without the rest of what ``import
    kubernetes`` loads (its API and model indexes, dynamic, watch, stream, utils, informer,
    leader election: parts the raw transport never uses). Its packages are entered without
    running their ``__init__``, and only the modules those two need are imported; in a pod
    that is 2.5 MB where the whole client took 12 (``bench/`` prints the imports floor). Where
    the whole package is already imported, that is used as it is."""
    if "kubernetes" not in sys.modules:
        _enter_packages()
    configuration = importlib.import_module("kubernetes.client.configuration")
    api_client = importlib.import_module("kubernetes.client.api_client")
    client = sys.modules["kubernetes.client"]
    if getattr(client, "__seguard_light__", False):
        client.Configuration = configuration.Configuration  # type: ignore[attr-defined]
        client.ApiClient = api_client.ApiClient  # type: ignore[attr-defined]
    exception = importlib.import_module("kubernetes.config.config_exception")
    return _Client(configuration.Configuration, api_client.ApiClient, exception.ConfigException)


def _loader(kubeconfig: Path | None) -> Callable[..., None]:
    """How the configuration is loaded: from a kubeconfig file, or from the pod's service
    account."""
    if kubeconfig is not None:
        loader: Callable[..., None] = _kube_config().load_kube_config
    else:
        loader = importlib.import_module("kubernetes.config.incluster_config").load_incluster_config
    return loader


# What the kubeconfig loader imports for one thing only, refreshing an OIDC auth-provider's
# token: requests_oauthlib and oauthlib, with requests beneath them (4.8 MB of RSS).
_OIDC_MODULES = ("requests_oauthlib", "oauthlib", "oauthlib.oauth2")


class _OnUse(types.ModuleType):
    """Stands for a module the kubeconfig loader names but may never use: the real module is
    imported when an attribute is first read from it."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # what the import system asks of a module: not a use
            raise AttributeError(attr)
        if sys.modules.get(self.__name__) is self:  # read while still standing in: the real one
            del sys.modules[self.__name__]
        module = importlib.import_module(self.__name__)
        if hasattr(module, attr):
            return getattr(module, attr)
        return importlib.import_module(f"{self.__name__}.{attr}")


def _oauth2_session(*args: Any, **kwargs: Any) -> Any:
    """requests_oauthlib's OAuth2Session, imported when an OIDC token is refreshed."""
    return importlib.import_module("requests_oauthlib").OAuth2Session(*args, **kwargs)


def _kube_config() -> Any:
    """The client's kubeconfig loader, with the OIDC refresh's libraries imported only when a
    token is refreshed (``_OIDC_MODULES``). Where they or the loader are imported already, the
    loader is imported as it is."""
    name = "kubernetes.config.kube_config"
    if name in sys.modules or any(module in sys.modules for module in _OIDC_MODULES):
        return importlib.import_module(name)
    stand_ins = {module: _OnUse(module) for module in _OIDC_MODULES}
    stand_ins["requests_oauthlib"].OAuth2Session = _oauth2_session  # type: ignore[attr-defined]
    sys.modules.update(stand_ins)
    try:
        return importlib.import_module(name)
    finally:
        # The loader keeps its names for them; anyone else importing them gets the real ones.
        for module, stand_in in stand_ins.items():
            if sys.modules.get(module) is stand_in:
                del sys.modules[module]


def _enter_packages() -> None:
    spec = importlib.util.find_spec("kubernetes")
    if spec is None or not spec.submodule_search_locations:
        raise ClusterError("the kubernetes client library is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, folder in (
        ("kubernetes", root),
        ("kubernetes.client", root / "client"),
        ("kubernetes.config", root / "config"),
        ("kubernetes.utils", root / "utils"),
    ):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            package.__seguard_light__ = True  # type: ignore[attr-defined]
            sys.modules[name] = package
    # api_client imports the models package for deserialising, which the transport never asks.
    models = types.ModuleType("kubernetes.client.models")
    models.__seguard_light__ = True  # type: ignore[attr-defined]
    sys.modules.setdefault("kubernetes.client.models", models)


def connect(kubeconfig: Path | None) -> Transport:
    """A transport for the kubeconfig, or the pod's service account when there is none."""
    client = _client()
    configuration = client.Configuration()
    try:
        load = _loader(kubeconfig)
        if kubeconfig is not None:
            load(config_file=str(kubeconfig), client_configuration=configuration)
        else:
            load(client_configuration=configuration)
    except client.ConfigException as exc:
        where = kubeconfig or "the pod's service account"
        raise ClusterError(f"cannot load {where}: {exc}") from None
    except OSError as exc:
        raise ClusterError(f"cannot load {kubeconfig}: {exc.strerror}") from None
    # No hidden retries inside urllib3: the watch loop has its own backoff, and the CLI should
    # fail at once with a clear line.
    configuration.retries = 0
    return Transport(client.ApiClient(configuration))
