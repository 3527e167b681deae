"""The few Kubernetes API calls the operator makes, as JSON in and JSON out.

kopf watches; this module acts. It uses the official client's configuration and connection pool (so
in-cluster service accounts, kubeconfigs, client certificates and tokens all work) but speaks raw REST
with plain dicts, the same shapes ``kubectl get -o json`` prints: no generated models between the API
and the operator's pure functions, and one typed surface (``Kube``) that the unit tests fake.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

import kubernetes

from kubescientist.adapters import metrics
from kubescientist.adapters.kube import naming

JOB_NAME_LABELS = ('batch.kubernetes.io/job-name', 'job-name')
"""The label the Job controller puts on its pods (the second for clusters older than 1.27)."""
SA_NAMESPACE_FILE = pathlib.Path('/var/run/secrets/kubernetes.io/serviceaccount/namespace')
NODE_CONTAINER = 'node'
"""The container of node, writeup and review pods (``manifests.CONTAINER``)."""
REQUEST_TIMEOUT = (10.0, 60.0)
"""(connect, read) seconds of every API call."""


class ApiError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class Kube(Protocol):
    """What the reconciler needs from the API."""

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create; when the object exists already (409), return the existing one."""

    def list(self, api_version: str, plural: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Objects of one kind in one namespace, by label selector."""

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or None."""

    def patch_status(self, api_version: str, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource."""

    def patch(self, api_version: str, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch the object itself."""

    def event(self, involved: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about an object (best effort)."""


def config_map_text(kube: Kube, namespace: str, name: str, key: str, field: str,
                    error: Callable[[str], Exception]) -> str:
    """The text under ``key`` of the ConfigMap ``name``; a missing map or key raises ``error(message)``, the
    message naming ``field`` (the spec field that refers to the map) so that the user knows what to fix."""
    found = kube.get('v1', 'configmaps', namespace, name)
    if found is None:
        raise error(f"{field}: no ConfigMap {name} in namespace {namespace}")
    text = (found.get('data') or {}).get(key)
    if text is None:
        raise error(f"{field}: ConfigMap {name} has no key {key}")
    return str(text)


def config_map_json(kube: Kube, namespace: str, name: str, key: str, field: str,
                    error: Callable[[str], Exception], shape: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """The JSON under ``key`` of the ConfigMap ``name``, which must be a list or an object (``shape``); what is
    missing, not JSON or of another shape raises ``error(message)`` naming ``field``."""
    text = config_map_text(kube, namespace, name, key, field, error)
    try:
        value = json.loads(text)
    except ValueError as err:
        raise error(f"{field}: ConfigMap {name} key {key} is not JSON: {err}") from None
    if not isinstance(value, shape):
        raise error(f"{field}: ConfigMap {name} key {key} must hold "
                    f"{'a JSON list' if shape is list else 'one JSON object'}")
    return value


def _path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    base = f'/api/{api_version}' if '/' not in api_version else f'/apis/{api_version}'
    path = f'{base}/namespaces/{urllib.parse.quote(namespace)}/{plural}'
    return f'{path}/{urllib.parse.quote(name)}' if name else path


_PLURALS = {'ExperimentNode': naming.NODES, 'ResearchRun': naming.RUNS, 'ResearchCampaign': 'researchcampaigns',
            'Job': 'jobs', 'Pod': 'pods',
            'Event': 'events', 'ConfigMap': 'configmaps', 'Secret': 'secrets'}


class ApiKube:
    """``Kube`` over the official client's ApiClient (thread-safe: one pool, calls from worker threads)."""

    def __init__(self, api: kubernetes.client.ApiClient | None = None, connections: int = 64) -> None:
        """``connections``: kept-alive connections to the API server. The client's default (5 per core) is
        fewer than the threads that call it at once, and each call beyond it opens a new TLS connection."""
        if api is None:
            config = kubernetes.client.Configuration.get_default_copy()
            config.connection_pool_maxsize = connections
            api = kubernetes.client.ApiClient(config)
        self.api = api

    def _call(self, method: str, path: str, query: Sequence[tuple[str, str]] = (), body: Any = None,
              content_type: str = 'application/json') -> Any:
        headers = {'Accept': 'application/json', 'Content-Type': content_type}
        if method != 'GET':
            metrics.api_write(method.lower(), _resource_of(path))
        try:
            _, url, headers, body, _ = self.api.param_serialize(
                method, path, query_params=list(query), header_params=headers, body=body,
                auth_settings=['BearerToken'])
            response = self.api.call_api(method, url, header_params=headers, body=body,
                                         _request_timeout=REQUEST_TIMEOUT)
            response.read()  # type: ignore[no-untyped-call]
        except (OSError, kubernetes.client.exceptions.OpenApiException) as err:
            metrics.api_error(method.lower(), _resource_of(path), 0)
            raise ApiError(0, f"{method} {path}: {err}") from err
        data = response.data or b'{}'
        if not 200 <= int(response.status) < 300:
            # A conflict on create and a missing object on get are the normal flow, not errors.
            if (method, int(response.status)) not in (('POST', 409), ('GET', 404)):
                metrics.api_error(method.lower(), _resource_of(path), int(response.status))
            try:
                message = json.loads(data).get('message', '')
            except ValueError:
                message = data[:500].decode(errors='replace')
            raise ApiError(int(response.status), f"{method} {path}: {message}")
        return json.loads(data)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj['metadata']
        plural = _PLURALS[obj['kind']]
        try:
            return cast(dict[str, Any], self._call('POST', _path(obj['apiVersion'], plural, meta['namespace']), body=obj))
        except ApiError as err:
            if err.status != 409:
                raise
        existing = self.get(obj['apiVersion'], plural, meta['namespace'], meta['name'])
        if existing is None:  # deleted in between: let the next pass create it
            raise ApiError(409, f"{obj['kind']} {meta['name']} exists and vanished")
        return existing

    def list(self, api_version: str, plural: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        data = self._call('GET', _path(api_version, plural, namespace), [('labelSelector', selector)])
        return list(data.get('items') or [])

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._call('GET', _path(api_version, plural, namespace, name)))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def patch_status(self, api_version: str, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any]) -> None:
        self._call('PATCH', _path(api_version, plural, namespace, name) + '/status', body={'status': status},
                   content_type='application/merge-patch+json')

    def patch(self, api_version: str, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._call('PATCH', _path(api_version, plural, namespace, name), body=patch,
                   content_type='application/merge-patch+json')

    def event(self, involved: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        meta = involved['metadata']
        now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
        body = {
            'apiVersion': 'v1', 'kind': 'Event',
            'metadata': {'generateName': f"{meta['name']}.", 'namespace': meta['namespace']},
            'involvedObject': {'apiVersion': involved['apiVersion'], 'kind': involved['kind'], 'name': meta['name'],
                               'namespace': meta['namespace'], 'uid': meta.get('uid', '')},
            'type': kind, 'reason': reason, 'message': message[:1024],
            'source': {'component': naming.COMPONENT}, 'reportingComponent': naming.COMPONENT,
            'reportingInstance': naming.COMPONENT, 'action': reason,
            'firstTimestamp': now[:19] + 'Z', 'lastTimestamp': now[:19] + 'Z', 'eventTime': now, 'count': 1,
        }
        try:
            self._call('POST', _path('v1', 'events', meta['namespace']), body=body)
        except ApiError:
            pass  # Events are a courtesy: status holds everything that matters.


class KubectlApi:
    """What ``kubectl scientist`` reads and changes, over the official client configured like kubectl.

    Problems are raised as ``error`` (the plugin's own exception), with a message the user can act on.
    """

    def __init__(self, namespace: str | None, kubeconfig: str | None, context: str | None,
                 error: Callable[[str], Exception] = RuntimeError) -> None:
        self.error = error
        config = kubernetes.config
        try:
            config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            if kubeconfig or context:
                raise self.error(f"kubeconfig {kubeconfig or '(default)'}, context {context or '(current)'}: "
                                 "cannot be loaded") from None
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                raise self.error("no kubeconfig ($KUBECONFIG, ~/.kube/config, --kubeconfig) and not in a pod") \
                    from None
            default = SA_NAMESPACE_FILE.read_text().strip() if SA_NAMESPACE_FILE.exists() else 'default'
        else:
            # kubectl's rule: the namespace of the context in use, else "default".
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            chosen = next((c for c in contexts if c['name'] == context), active) if context else active
            default = ((chosen or {}).get('context') or {}).get('namespace') or 'default'
        self.namespace: str = namespace or default
        self.custom = kubernetes.client.CustomObjectsApi()
        self.core = kubernetes.client.CoreV1Api()

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except kubernetes.client.exceptions.ApiException as err:
            if err.status == 404:
                raise self.error(f"{what} not found in namespace {self.namespace}") from None
            if err.status == 403:
                raise self.error(f"{what}: forbidden ({_reason(err)})") from None
            raise self.error(f"{what}: HTTP {err.status}: {_reason(err)}") from None

    def get_run(self, name: str) -> dict[str, Any]:
        run: dict[str, Any] = self._call(f"researchrun {name}", self.custom.get_namespaced_custom_object,
                                         naming.GROUP, naming.VERSION, self.namespace, naming.RUNS, name)
        return run

    def list_nodes(self, run: str) -> list[dict[str, Any]]:
        data = self._call(f"experimentnodes of {run}", self.custom.list_namespaced_custom_object,
                          naming.GROUP, naming.VERSION, self.namespace, naming.NODES,
                          label_selector=f'{naming.RUN_LABEL}={run}')
        return list(data.get('items') or [])

    def get_node(self, name: str) -> dict[str, Any]:
        node: dict[str, Any] = self._call(f"experimentnode {name}", self.custom.get_namespaced_custom_object,
                                          naming.GROUP, naming.VERSION, self.namespace, naming.NODES, name)
        return node

    def set_suspend(self, run: str, suspend: bool) -> dict[str, Any]:
        patched: dict[str, Any] = self._call(
            f"researchrun {run}", self.custom.patch_namespaced_custom_object, naming.GROUP, naming.VERSION,
            self.namespace, naming.RUNS, run, {'spec': {'suspend': suspend}}, _content_type='application/merge-patch+json')
        return patched

    def get_secret(self, name: str) -> dict[str, Any] | None:
        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
        except kubernetes.client.exceptions.ApiException as err:
            if err.status == 404:
                return None
            raise self.error(f"secret {name}: HTTP {err.status}: {_reason(err)}") from None
        return {'data': dict(secret.data or {})}

    def job_log(self, job: str) -> str:
        pods: list[Any] = []
        for label in JOB_NAME_LABELS:
            found = self._call(f"pods of Job {job}", self.core.list_namespaced_pod, self.namespace,
                               label_selector=f'{label}={job}')
            pods = list(found.items or [])
            if pods:
                break
        if not pods:
            raise self.error(f"Job {job} has no pod left to read a log from")
        newest = max(pods, key=lambda p: p.metadata.creation_timestamp)
        log: str = self._call(f"log of pod {newest.metadata.name}", self.core.read_namespaced_pod_log,
                              newest.metadata.name, self.namespace, container=NODE_CONTAINER)
        return log


def _reason(err: Any) -> str:
    try:
        return str(json.loads(err.body).get('message')) if err.body else str(err.reason)
    except (ValueError, AttributeError):
        return str(err.reason)


def load_config() -> None:
    """Configure the official client: in-cluster when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def _resource_of(path: str) -> str:
    """The resource (plural, with a subresource) a request path names, for the API-error metric's label."""
    parts = path.strip('/').split('/')
    if 'namespaces' in parts and len(parts) > parts.index('namespaces') + 2:
        parts = parts[parts.index('namespaces') + 2:]
    else:
        parts = parts[3:] if parts[:1] == ['apis'] else parts[2:]
    return '/'.join([parts[0], *parts[2:3]]) if parts else 'unknown'
