"""What a run's ``spec.runtime`` and ``spec.datasets`` make of its node Jobs, and what must exist first.

- ``runtime.image`` / ``imagePullPolicy`` replace the chart's node image for this run's node pods;
  ``runtime.env`` reaches the program through the runtime's ``--env`` (never the container's own env, so
  the runtime's variables and the program's stay apart).
- ``runtime.shmSize`` mounts a memory-medium emptyDir of that sizeLimit at /dev/shm (the container
  runtime's own is 64 MiB); the in-pod runtime gets the size too, for the sandbox's /dev/shm.
- ``runtime.ephemeralStorage`` is the node container's ephemeral-storage request and limit and the
  sizeLimit of the /work and /tmp emptyDirs; the in-pod runtime gets it as its disk quota, so a program
  that fills the disk is killed with a disk reason (a buggy node) before the kubelet evicts the pod.
- A PersistentVolumeClaim or ConfigMap dataset is a read-only volume at its mountPath; one that does not
  exist stalls the run with a condition naming it (checked each pass, so creating it lets the run go on).
- An object-storage dataset is an emptyDir (sized by maxSize) that an init container fills from presigned
  GET URLs of the objects under the prefix (``experiment_runtime fetch-dataset``); the node container
  mounts it read-only. The pod holds no credential.
- Every dataset path is passed to the runtime (``--dataset``), which shows it read-only inside the sandbox.
"""

from __future__ import annotations

import copy
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from kubescientist.adapters.kube.clients import Kube
from kubescientist.adapters.kube.config import Settings
from kubescientist.adapters.kube.manifests import TMP_DIR, WORK_DIR, container_security
from kubescientist.adapters.kube.storage import Store
from kubescientist.core.quantity import parse_quantity
from kubescientist.core.spec import RunSpec

SHM_DIR = '/dev/shm'
EPHEMERAL_STORAGE = 'ephemeral-storage'
MAX_DATASET_OBJECTS = 256
"""Objects of one object-storage dataset (their presigned URLs travel in the init container's arguments)."""

DatasetObjects = Mapping[str, list[dict[str, Any]]]
"""Per dataset name: ``[{"path", "size", "url"}]``."""


def dataset_problems(kube: Kube, namespace: str, spec: RunSpec) -> str | None:
    """Why the run's datasets cannot be mounted yet (each problem naming its dataset), or None."""
    problems = []
    for index, dataset in enumerate(spec.datasets):
        where = f"spec.datasets[{index}] ({dataset.name})"
        if dataset.claim_name is not None:
            if kube.get('v1', 'persistentvolumeclaims', namespace, dataset.claim_name) is None:
                problems.append(f"{where}: PersistentVolumeClaim {dataset.claim_name!r} not found in namespace "
                                f"{namespace}; create it, or fix claimName")
        elif dataset.config_map is not None:
            if kube.get('v1', 'configmaps', namespace, dataset.config_map) is None:
                problems.append(f"{where}: ConfigMap {dataset.config_map!r} not found in namespace {namespace}; "
                                "create it, or fix configMap.name")
        elif dataset.s3_uri is None:
            problems.append(f"{where}: only a local path is given, which exists only in local mode; set "
                            "persistentVolumeClaim, configMap or s3 to run in a cluster")
    return "; ".join(problems) or None


def dataset_objects(store: Store, spec: RunSpec, seconds: int) -> dict[str, list[dict[str, Any]]]:
    """The objects of every object-storage dataset, with presigned GET URLs valid for `seconds`."""
    found = {}
    for dataset in spec.datasets:
        if dataset.s3_uri is None:
            continue
        parsed = urllib.parse.urlsplit(dataset.s3_uri)
        prefix = parsed.path.lstrip('/')
        found[dataset.name] = [{'path': path, 'size': size, 'url': url} for path, size, url in
                               store.presign_prefix(parsed.netloc, prefix, seconds, MAX_DATASET_OBJECTS)]
    return found


def apply(job: Mapping[str, Any], spec: RunSpec, settings: Settings, objects: DatasetObjects) -> dict[str, Any]:
    """`job` (a node Job from ``manifests.node_job``) with the run's image, variables and datasets."""
    out = copy.deepcopy(dict(job))
    pod = out['spec']['template']['spec']
    container = pod['containers'][0]
    runtime = spec.runtime
    if runtime.image:
        container['image'] = runtime.image
    if runtime.image_pull_policy:
        container['imagePullPolicy'] = runtime.image_pull_policy
    for name, value in runtime.env:
        container['args'] += ['--env', f'{name}={value}']
    for requirement in runtime.requirements:
        container['args'] += ['--requirement', requirement]
    if runtime.shm_size is not None:
        pod['volumes'].append({'name': 'shm', 'emptyDir': {'medium': 'Memory', 'sizeLimit': runtime.shm_size}})
        container['volumeMounts'].append({'name': 'shm', 'mountPath': SHM_DIR})
        container['args'] += ['--shm-bytes', str(int(parse_quantity(runtime.shm_size)))]
    if runtime.ephemeral_storage is not None:
        fetched = sum(int(parse_quantity(d.max_bytes)) for d in spec.datasets
                      if d.s3_uri is not None and d.claim_name is None and d.config_map is None)
        _ephemeral_storage(pod, container, runtime.ephemeral_storage, fetched)
    for dataset in spec.datasets:
        volume = f'dataset-{dataset.name}'
        if dataset.claim_name is not None:
            pod['volumes'].append({'name': volume, 'persistentVolumeClaim': {'claimName': dataset.claim_name,
                                                                             'readOnly': True}})
        elif dataset.config_map is not None:
            pod['volumes'].append({'name': volume, 'configMap': {'name': dataset.config_map}})
        elif dataset.s3_uri is not None:
            pod['volumes'].append({'name': volume, 'emptyDir': {'sizeLimit': dataset.max_bytes}})
            pod.setdefault('initContainers', []).append(_fetcher(container, settings, volume, dataset.mount_path,
                                                                 int(parse_quantity(dataset.max_bytes)),
                                                                 objects.get(dataset.name, [])))
        else:
            continue
        container['volumeMounts'].append({'name': volume, 'mountPath': dataset.mount_path, 'readOnly': True})
        container['args'] += ['--dataset', dataset.mount_path]
    return out


def _ephemeral_storage(pod: dict[str, Any], container: dict[str, Any], size: str, fetched: int) -> None:
    """The disk of the node container: its request and limit, its scratch emptyDirs' size, the runtime's quota.

    Each of /work and /tmp may grow to the whole size; the runtime's quota, polled over the scratch,
    kills the program with a disk reason once they hold `size` together. The kubelet counts every
    emptyDir of the pod against the containers' limits, so the limit adds the `fetched` bytes that
    object-storage datasets may fill: a full dataset volume is not the program's disk use.
    """
    total = size if not fetched else str(int(parse_quantity(size)) + fetched)
    for kind in ('requests', 'limits'):
        container['resources'].setdefault(kind, {})[EPHEMERAL_STORAGE] = total
    mounted = {m['mountPath']: m['name'] for m in container['volumeMounts']}
    for volume in pod['volumes']:
        if volume['name'] in (mounted.get(WORK_DIR), mounted.get(TMP_DIR)):
            volume['emptyDir'] = {**volume.get('emptyDir', {}), 'sizeLimit': size}
    container['args'] += ['--max-disk-bytes', str(int(parse_quantity(size)))]


def _fetcher(container: Mapping[str, Any], settings: Settings, volume: str, path: str, max_bytes: int,
             objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The init container that fills an object-storage dataset's volume before the program starts."""
    return {
        'name': f'fetch-{volume}'[:63],
        'image': container['image'],
        'imagePullPolicy': container['imagePullPolicy'],
        'command': [settings.python],
        'args': ['-m', 'experiment_runtime', 'fetch-dataset', '--dest', path, '--max-bytes', str(max_bytes),
                 '--objects-json', json.dumps(objects, separators=(',', ':'))],
        'resources': copy.deepcopy(container['resources']),
        'securityContext': container_security(int(container['securityContext']['runAsUser'])),
        'volumeMounts': [{'name': volume, 'mountPath': path}],
        'terminationMessagePolicy': 'FallbackToLogsOnError',
    }
