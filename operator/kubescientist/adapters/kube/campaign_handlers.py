"""The kopf side of campaigns: one daemon per ResearchCampaign that runs the campaign controller's passes,
woken when one of its ResearchRuns changes (a run finished: a slot is free, a round may end) or its spec is
edited (an approval), and every resync period anyway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import kopf

from kubescientist.adapters import metrics
from kubescientist.adapters.kube import clients, naming
from kubescientist.adapters.kube.campaigns import CAMPAIGN_LABEL, CAMPAIGNS, CampaignReconciler

ERROR_BACKOFF_SECONDS = 30.0
"""Pause after a pass that failed unexpectedly."""


def _wakers(memo: Any) -> dict[tuple[str, str], asyncio.Event]:
    wakers: dict[tuple[str, str], asyncio.Event] = memo.setdefault('campaign_wakers', {})
    return wakers


@kopf.daemon(naming.GROUP, naming.VERSION, CAMPAIGNS, cancellation_timeout=5.0)
async def campaign_daemon(body: kopf.Body, namespace: str | None, name: str, stopped: kopf.DaemonStopped,
                          memo: Any, logger: kopf.Logger, **_: Any) -> None:
    assert namespace is not None, "ResearchCampaigns are namespaced"
    reconciler: CampaignReconciler = memo.setdefault('campaigns', None) or CampaignReconciler(clients.ApiKube())
    memo['campaigns'] = reconciler
    wake = _wakers(memo).setdefault((namespace, name), asyncio.Event())
    try:
        while not stopped:
            wake.clear()
            campaign = json.loads(json.dumps(dict(body)))
            try:
                delay = await asyncio.to_thread(reconciler.reconcile, campaign)
            except Exception:  # noqa: BLE001 - a failed pass is retried
                logger.exception("campaign pass of %s/%s failed", namespace, name)
                delay = ERROR_BACKOFF_SECONDS
            try:
                await asyncio.wait_for(wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
    finally:
        _wakers(memo).pop((namespace, name), None)
        if body.get('metadata', {}).get('deletionTimestamp'):
            metrics.campaign_forgotten(namespace, name)


@kopf.on.event(naming.GROUP, naming.VERSION, naming.RUNS)
async def campaign_run_changed(labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    """A run of a campaign changed: wake its campaign."""
    campaign = labels.get(CAMPAIGN_LABEL)
    event = _wakers(memo).get((namespace or '', campaign or ''))
    if event is not None:
        event.set()


@kopf.on.event(naming.GROUP, naming.VERSION, CAMPAIGNS)
async def campaign_changed(body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A spec edit (an approval, a budget) wakes the campaign; its own status writes do not."""
    if body.get('metadata', {}).get('generation') != body.get('status', {}).get('observedGeneration'):
        event = _wakers(memo).get((namespace or '', name))
        if event is not None:
            event.set()
