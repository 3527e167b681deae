"""The objects the operator creates, as plain dicts: ExperimentNodes, node Jobs, writeup and review Jobs.

Pure builders: no API calls, so every field is checked by unit tests. The pod template is written for the
``restricted`` Pod Security Standard (non-root, seccomp RuntimeDefault, no capabilities, no privilege
escalation, read-only root filesystem with emptyDirs for scratch), mounts no ServiceAccount token and no
Secret: a pod reaches object storage only through the presigned URLs in its arguments.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubescientist.adapters.kube import naming
from kubescientist.adapters.kube.config import Settings
from kubescientist.core.journal import Node
from kubescientist.core.quantity import mebibytes_up
from kubescientist.core.spec import RunSpec

WORK_DIR = '/work'
TMP_DIR = '/tmp'
CONTAINER = 'node'
GPU_RESOURCE = 'nvidia.com/gpu'
GPU_PRODUCT_LABEL = 'nvidia.com/gpu.product'
"""The GPU model of a node, as NVIDIA GPU feature discovery labels it (e.g. NVIDIA-H100-80GB-HBM3)."""
GPU_MEMORY_LABEL = 'nvidia.com/gpu.memory'
"""Memory per GPU of a node in MiB, as NVIDIA GPU feature discovery labels it (e.g. 81559)."""
REASON_CHARS = 2000
"""ExperimentNode spec.reason is at most 2000 characters."""


@dataclasses.dataclass(frozen=True)
class Owner:
    """An object that owns a child (the child is garbage-collected with it)."""

    api_version: str
    kind: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {'apiVersion': self.api_version, 'kind': self.kind, 'name': self.name, 'uid': self.uid,
                'controller': True, 'blockOwnerDeletion': True}


def run_owner(name: str, uid: str) -> Owner:
    return Owner(naming.API_VERSION, 'ResearchRun', name, uid)


def node_owner(name: str, uid: str) -> Owner:
    return Owner(naming.API_VERSION, 'ExperimentNode', name, uid)


def node_config(node: Node) -> dict[str, Any]:
    """What the program gets as config.json (the data side's contract: seed, params, variant, ablation)."""
    return {'seed': node.config.seed, 'params': dict(node.config.params), 'variant': node.config.variant,
            'ablation': node.config.ablation}


def experiment_node(run: str, namespace: str, owner: Owner, spec: RunSpec, node: Node,
                    code_hash: str, code_uri: str) -> dict[str, Any]:
    """The ExperimentNode of an engine node (its spec never changes after creation)."""
    config: dict[str, Any] = {'seed': node.config.seed, 'params': dict(node.config.params)}
    if node.config.variant is not None:
        config['variant'] = node.config.variant
    if node.config.ablation is not None:
        config['ablation'] = node.config.ablation
    body: dict[str, Any] = {
        'run': run,
        'stage': node.stage,
        'action': node.action,
        'code': {'hash': code_hash, 'uri': code_uri},
        'config': config,
        'reason': node.reason[:REASON_CHARS],
        'resources': {'gpus': spec.resources.gpus, 'cpu': spec.resources.cpu, 'memory': spec.resources.memory,
                      'deadlineSeconds': spec.resources.deadline_seconds},
    }
    if spec.resources.gpu_type is not None:
        body['resources']['gpuType'] = spec.resources.gpu_type
    if spec.resources.gpu_memory is not None:
        body['resources']['gpuMemory'] = spec.resources.gpu_memory
    if node.parent is not None:
        body['parent'] = naming.node_name(run, node.parent)
    return {
        'apiVersion': naming.API_VERSION,
        'kind': 'ExperimentNode',
        'metadata': {'name': naming.node_name(run, node.id), 'namespace': namespace,
                     'labels': naming.child_labels(run, 'node', node.id), 'ownerReferences': [owner.reference()]},
        'spec': body,
    }


def pod_security() -> dict[str, Any]:
    return {'runAsNonRoot': True, 'seccompProfile': {'type': 'RuntimeDefault'}}


def container_security(uid: int) -> dict[str, Any]:
    return {'allowPrivilegeEscalation': False, 'capabilities': {'drop': ['ALL']}, 'privileged': False,
            'readOnlyRootFilesystem': True, 'runAsNonRoot': True, 'runAsUser': uid, 'runAsGroup': uid}


def _scheduling(spec: RunSpec) -> dict[str, Any]:
    """nodeSelector, tolerations and priorityClassName, passed through from the run."""
    raw = spec.raw
    out: dict[str, Any] = {}
    if raw.get('nodeSelector'):
        out['nodeSelector'] = dict(raw['nodeSelector'])
    if raw.get('tolerations'):
        out['tolerations'] = [dict(t) for t in raw['tolerations']]
    if raw.get('priorityClassName'):
        out['priorityClassName'] = str(raw['priorityClassName'])
    return out


def gpu_affinity(spec: RunSpec) -> dict[str, Any] | None:
    """The required node affinity of ``resources.gpuType`` and ``gpuMemory``, or None without them.

    Node affinity rather than nodeSelector: a nodeSelector matches only equal values, and the memory is a
    minimum (``Gt`` on the MiB label, one below the least acceptable). Both go in one term, so a node must
    satisfy both; the run's own nodeSelector still applies on top.
    """
    res = spec.resources
    expressions = []
    if res.gpu_type is not None:
        expressions.append({'key': GPU_PRODUCT_LABEL, 'operator': 'In', 'values': [res.gpu_type]})
    if res.gpu_memory is not None:
        expressions.append({'key': GPU_MEMORY_LABEL, 'operator': 'Gt',
                            'values': [str(mebibytes_up(res.gpu_memory) - 1)]})
    if not expressions:
        return None
    return {'nodeAffinity': {'requiredDuringSchedulingIgnoredDuringExecution': {
        'nodeSelectorTerms': [{'matchExpressions': expressions}]}}}


def _job(name: str, namespace: str, owner: Owner, labels: Mapping[str, str], spec: RunSpec,
         settings: Settings, image: str, args: Sequence[str], resources: Mapping[str, Any], deadline: int,
         env: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    job_labels = dict(labels)
    queue = spec.raw.get('queueName')
    if queue:
        job_labels[naming.QUEUE_LABEL] = str(queue)
    pod_labels = {**settings.pod_labels, **labels}
    uid = settings.run_as_user
    container = {
        'name': CONTAINER,
        'image': image,
        'imagePullPolicy': settings.image_pull_policy,
        'command': [settings.python],
        'args': list(args),
        'env': [{'name': k, 'value': v} for k, v in env.items()],
        'resources': dict(resources),
        'securityContext': container_security(uid),
        'volumeMounts': [{'name': 'work', 'mountPath': WORK_DIR}, {'name': 'tmp', 'mountPath': TMP_DIR}],
        'terminationMessagePath': '/dev/termination-log',
        # The runtime always writes its message; if it dies before that, the log tail explains why.
        'terminationMessagePolicy': 'FallbackToLogsOnError',
        'workingDir': WORK_DIR,
    }
    pod_spec: dict[str, Any] = {
        'restartPolicy': 'Never',
        'automountServiceAccountToken': False,
        'enableServiceLinks': False,
        'securityContext': {**pod_security(), 'runAsUser': uid, 'runAsGroup': uid, 'fsGroup': uid},
        'containers': [container],
        'volumes': [{'name': 'work', 'emptyDir': {}}, {'name': 'tmp', 'emptyDir': {}}],
        **_scheduling(spec),
    }
    return {
        'apiVersion': 'batch/v1',
        'kind': 'Job',
        'metadata': {'name': name, 'namespace': namespace, 'labels': job_labels,
                     'annotations': dict(annotations or {}), 'ownerReferences': [owner.reference()]},
        'spec': {
            'backoffLimit': 0,
            'activeDeadlineSeconds': deadline,
            'template': {'metadata': {'labels': pod_labels}, 'spec': pod_spec},
        },
    }


def _env() -> dict[str, str]:
    return {'KUBESCIENTIST_WORK_DIR': WORK_DIR, 'TMPDIR': TMP_DIR, 'HOME': WORK_DIR,
            'PYTHONUNBUFFERED': '1', 'PYTHONDONTWRITEBYTECODE': '1'}


def node_job(run: str, namespace: str, owner: Owner, spec: RunSpec, node: Node, attempt: int, settings: Settings,
             code_url: str, code_hash: str, put_urls: Mapping[str, str]) -> dict[str, Any]:
    """The Job that runs one attempt of a node: one pod running ``python -m experiment_runtime pod``."""
    res = spec.resources
    quantities: dict[str, Any] = {'cpu': str(res.cpu), 'memory': str(res.memory)}
    limits = dict(quantities)
    if res.gpus > 0:
        limits[GPU_RESOURCE] = str(res.gpus)
    args = ['-m', 'experiment_runtime', 'pod', '--code-url', code_url, '--code-sha256', code_hash,
            '--config-json', json.dumps(node_config(node), sort_keys=True, separators=(',', ':')),
            '--deadline', str(res.deadline_seconds)]
    # '=' joins each to its flag: an argument that itself starts with '--' must not read as an option.
    args += [f'--program-arg={arg}' for arg in (spec.template.args if spec.template is not None else ())]
    for name, url in put_urls.items():
        args += ['--put-url', f'{name}={url}']
    job = _job(naming.job_name(run, node.id, attempt), namespace, owner,
               naming.child_labels(run, 'node', node.id, attempt), spec, settings, settings.node_image, args,
               {'requests': quantities, 'limits': limits}, res.deadline_seconds + settings.deadline_margin_seconds,
               {**_env(), 'KUBESCIENTIST_NODE': naming.node_name(run, node.id)},
               {'kubescientist.io/code-hash': code_hash})
    affinity = gpu_affinity(spec)
    if affinity is not None:  # node pods only: writeup and review Jobs need no GPU
        job['spec']['template']['spec']['affinity'] = affinity
    return job


def publish_job(run: str, namespace: str, owner: Owner, spec: RunSpec, role: str, settings: Settings,
                records_url: str, put_urls: Mapping[str, str], options: Sequence[str] = ()) -> dict[str, Any]:
    """The writeup or review Job of a run: ``python -m kubescientist.adapters.kube.publishing <role> ...``."""
    quantities = {'cpu': settings.publish_cpu, 'memory': settings.publish_memory}
    args = ['-m', 'kubescientist.adapters.kube.publishing', role, '--records-url', records_url, *options]
    for name, url in put_urls.items():
        args += ['--put-url', f'{name}={url}']
    return _job(naming.stage_job_name(run, role), namespace, owner, naming.child_labels(run, role), spec, settings,
                settings.image_for_publishing, args, {'requests': quantities, 'limits': dict(quantities)},
                settings.publish_deadline_seconds, _env())
