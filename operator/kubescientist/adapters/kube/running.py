"""Serving: start kopf with the operator's handlers, for the CLI and ``python -m kubescientist.adapters.kube``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import kopf

from kubescientist.adapters.kube import campaign_handlers, handlers


def serve(namespaces: Sequence[str] = (), clusterwide: bool = False, liveness: str | None = None,
          verbose: bool = False) -> None:
    """Run the operator until SIGINT/SIGTERM: serve ``namespaces`` (globs allowed), or all when ``clusterwide``.

    Standalone (no kopf peering): run one replica, with a Recreate strategy.
    """
    if not namespaces and not clusterwide:
        raise ValueError("serve: name at least one namespace, or serve the whole cluster")
    # Importing the modules registered the handlers.
    assert handlers.run_daemon is not None and campaign_handlers.campaign_daemon is not None
    kopf.configure(verbose=verbose)
    if not verbose:
        # kopf logs every successful handler call at INFO: one line per watch event of every child.
        logging.getLogger('kopf.objects').setLevel(logging.WARNING)
    kopf.run(standalone=True, clusterwide=clusterwide, namespaces=list(namespaces), liveness_endpoint=liveness)
