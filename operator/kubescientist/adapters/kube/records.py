"""The records a run's writeup and review read: a run folder, as the local runner leaves one, in a tarball.

``records.tar.gz`` holds run.yaml (the run as applied), journal.json, summary.json, the template folder
and, for every good node, ``nodes/<id>/metrics.json`` and ``nodes/<id>/plots/``, taken from the node's
uploaded outputs. The writeup pod unpacks it and calls the paper writer on it like on a local run.
"""

from __future__ import annotations

import json
import logging
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import yaml

from experiment_runtime.pod import TransferError, pack, unpack
from kubescientist.adapters.kube import naming
from kubescientist.adapters.kube.storage import Store
from kubescientist.core.journal import Journal
from kubescientist.core.spec import RunSpec
from kubescientist.core.summary import summarize

log = logging.getLogger('kubescientist.operator')


def write_records(run: Mapping[str, Any], spec: RunSpec, journal: Journal, template_root: pathlib.Path,
                  store: Store) -> None:
    """Store run.yaml, summary.json and records.tar.gz of a finished search."""
    meta = run['metadata']
    manifest = {'apiVersion': naming.API_VERSION, 'kind': 'ResearchRun',
                'metadata': {'name': meta['name'], 'namespace': meta['namespace']}, 'spec': run['spec']}
    summary = {'run': meta['name'], 'template': 'template', **summarize(spec, journal)}
    store.put(store.run_key('run.yaml'), yaml.safe_dump(manifest, sort_keys=False).encode(), 'application/yaml')
    store.put_json(store.run_key('summary.json'), summary)
    with tempfile.TemporaryDirectory(prefix='ks-records-') as tmp:
        root = pathlib.Path(tmp)
        (root / 'run.yaml').write_text(yaml.safe_dump(manifest, sort_keys=False))
        (root / 'journal.json').write_text(json.dumps(journal.to_dict(), indent=1, default=str))
        (root / 'summary.json').write_text(json.dumps(summary, indent=1, default=str))
        for path in template_root.rglob('*'):
            if path.is_file():
                target = root / 'template' / path.relative_to(template_root)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
        for node in journal.nodes.values():
            if not node.good:
                continue
            folder = root / 'nodes' / node.id
            folder.mkdir(parents=True)
            metrics = store.get(store.node_key(node.id, node.attempts, 'metrics.json'))
            if metrics is not None:
                (folder / 'metrics.json').write_bytes(metrics)
            plots = store.get(store.node_key(node.id, node.attempts, 'plots.tar.gz'))
            if plots is not None:
                try:
                    unpack(plots, folder / 'plots')
                except TransferError as err:
                    log.warning("run %s: plots of %s unreadable: %s", meta['name'], node.id, err)
        store.put(store.run_key('records.tar.gz'), pack(root), 'application/gzip')
