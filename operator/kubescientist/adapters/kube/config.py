"""The operator's own settings: images, timings, extra pod labels. Read once from the environment at start.

Everything a user decides per run lives in the ResearchRun; what is decided per installation (which image
runs nodes, how often runs are reconciled) lives here, so a Helm chart sets it as container env.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

PREFIX = 'KUBESCIENTIST_'


@dataclasses.dataclass(frozen=True)
class Settings:
    """Installation-wide settings of the operator."""

    node_image: str = 'ghcr.io/kubescientist/node-runtime:0.1.0'
    """Image of node pods: Python with ``experiment_runtime`` and the templates' dependencies (torch...)."""
    publish_image: str = ''
    """Image of writeup and review pods: ``kubescientist`` plus LaTeX; empty means ``node_image``."""
    python: str = 'python'
    """The interpreter's command inside those images."""
    image_pull_policy: str = 'IfNotPresent'
    """Pull policy of node, writeup and review containers."""
    pod_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Extra labels on every pod the operator creates (e.g. for a policy engine, or the e2e harness)."""
    run_as_user: int = 65532
    """The non-root uid of every pod the operator creates (PSS restricted wants non-root)."""
    deadline_margin_seconds: int = 120
    """Added to a node's deadline for the Job's activeDeadlineSeconds: code download, uploads, start-up.
    The program's own deadline is enforced inside the pod; the Job's is the backstop."""
    publish_deadline_seconds: int = 3600
    """activeDeadlineSeconds of writeup and review Jobs."""
    publish_cpu: str = '1'
    """CPU of writeup and review pods (request = limit)."""
    publish_memory: str = '2Gi'
    """Memory of writeup and review pods (request = limit)."""
    presign_seconds: int = 7 * 24 * 3600
    """Lifetime of presigned URLs (7 days, the SigV4 maximum): long enough for a node that queues for GPUs."""
    resync_seconds: float = 10.0
    """How often each active run is reconciled even when nothing nudged it."""
    idle_resync_seconds: float = 120.0
    """How often a finished run is looked at again (a spec edit also wakes it)."""
    reconcile_workers: int = 32
    """Reconcile passes that may run at once (one per run at most): threads of the operator's own pool, so
    that many runs do not queue behind each other for the asyncio default pool (cores + 4 threads)."""
    finished_job_ttl_seconds: int = 300
    """ttlSecondsAfterFinished set on a node's Job once its outcome is in the journal: the Job and its pod go
    away after this long (their logs with them; outputs stay in object storage)."""
    s3_endpoint: str = ''
    """Overrides spec.storage.s3.endpoint for the operator's own S3 calls (an in-cluster address, say);
    presigned URLs still use the run's endpoint, which is what pods reach."""

    @property
    def image_for_publishing(self) -> str:
        return self.publish_image or self.node_image


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``KUBESCIENTIST_*`` variables (``KUBESCIENTIST_NODE_IMAGE``, ``..._POD_LABELS`` as JSON...)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for field in dataclasses.fields(Settings):
        raw = env.get(PREFIX + field.name.upper())
        if raw is None or raw == '':
            continue
        if field.name == 'pod_labels':
            labels = json.loads(raw)
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise ValueError(f"{PREFIX}POD_LABELS: must be a JSON object of strings, got {raw!r}")
            values[field.name] = dict(labels)
        elif field.type in ('int', int):
            values[field.name] = int(raw)
        elif field.type in ('float', float):
            values[field.name] = float(raw)
        else:
            values[field.name] = raw
    return Settings(**values)  # type: ignore[arg-type]
