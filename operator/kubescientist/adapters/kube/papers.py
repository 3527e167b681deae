"""A succeeded run's writeup and review Jobs: the second state machine of a run, after its search.

waiting -> running (the Job is created) -> succeeded | failed (read from the Job's pod), first for the
writeup, then for the review of the paper it wrote. Each change of phase is saved in the run's state
(``state.json``) before the next pass acts on it; Job names are deterministic, so a pass that runs twice
creates nothing twice (409 is success). The pods themselves run ``adapters.kube.publishing``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from kubescientist.adapters.kube import manifests, naming, outcomes, records, statuses
from kubescientist.adapters.kube.clients import Kube
from kubescientist.adapters.kube.config import Settings
from kubescientist.adapters.kube.persistence import RunState

Role = Literal['writeup', 'review']
EVENTS: dict[Role, tuple[str, str, str]] = {'writeup': ('WriteupStarted', 'PaperWritten', 'WriteupFailed'),
                                            'review': ('ReviewStarted', 'PaperReviewed', 'ReviewFailed')}
"""The Kubernetes Event reasons of each role: started, succeeded, failed."""
ACTIVE = ('waiting', 'running')


class Papers:
    """Advances the writeup and review of succeeded runs; one instance per operator."""

    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube = kube
        self.settings = settings

    def advance(self, run: Mapping[str, Any], state: RunState, jobs: Mapping[str, Mapping[str, Any]],
                pods: Mapping[str, Sequence[Mapping[str, Any]]], stalled: list[str]) -> None:
        """One step of each Job still to run; ``jobs``/``pods`` are the run's, by Job name."""
        if state.writeup.phase not in ACTIVE and state.review.phase not in ACTIVE:
            return
        meta = run['metadata']
        namespace, name = meta['namespace'], meta['name']
        store, seconds = state.store, self.settings.presign_seconds
        if not state.records:
            records.write_records(run, state.spec, state.journal, state.template.root, state.store)
            state.records = True
            state.save()
        records_url = store.presign_get(store.run_key('records.tar.gz'), seconds)
        owner = manifests.run_owner(name, meta['uid'])
        if state.writeup.phase in ACTIVE:
            urls = {'paper.pdf': store.presign_put(store.run_key('paper/paper.pdf'), seconds),
                    'paper.tar.gz': store.presign_put(store.run_key('paper/paper.tar.gz'), seconds)}
            state.writeup = self._step(run, state, 'writeup', state.writeup, jobs, pods, stalled,
                                       lambda: manifests.publish_job(name, namespace, owner, state.spec, 'writeup',
                                                                     self.settings, records_url, urls),
                                       store.uri(store.run_key('paper/paper.pdf')))
        if state.writeup.phase == 'succeeded' and state.review.phase in ACTIVE:
            urls = {'review.json': store.presign_put(store.run_key('review.json'), seconds)}
            paper = store.presign_get(store.run_key('paper/paper.tar.gz'), seconds)
            state.review = self._step(run, state, 'review', state.review, jobs, pods, stalled,
                                      lambda: manifests.publish_job(
                                          name, namespace, owner, state.spec, 'review', self.settings, records_url,
                                          urls, ['--paper-url', paper, '--reviewers', str(state.spec.reviewers)]),
                                      store.uri(store.run_key('review.json')))

    def _step(self, run: Mapping[str, Any], state: RunState, role: Role, current: statuses.Step,
              jobs: Mapping[str, Mapping[str, Any]], pods: Mapping[str, Sequence[Mapping[str, Any]]],
              stalled: list[str], build: Callable[[], dict[str, Any]], product: str) -> statuses.Step:
        started, succeeded, failed = EVENTS[role]
        job_name = naming.stage_job_name(run['metadata']['name'], role)
        job = jobs.get(job_name)
        if job is None:
            self.kube.create(build())
            updated = statuses.Step(phase='running', message=f"Job {job_name} created")
            self.kube.event(run, 'Normal', started, f"{role} Job {job_name} started")
        else:
            observation = outcomes.observe(job, pods.get(job_name, []))
            ok, report, message = outcomes.publish_result(observation)
            if observation.state != 'finished':
                if observation.stalled:
                    stalled.append(f"{job_name}: {observation.stalled}")
                updated = statuses.Step(phase='running', message=message)
            elif ok:
                overall = report.get('overall')
                decision = report.get('decision')
                updated = statuses.Step(phase='succeeded', message=message, uri=product,
                                        decision=str(decision) if decision else None,
                                        overall=float(overall) if isinstance(overall, (int, float)) else None,
                                        weaknesses=tuple(str(w) for w in report.get('weaknesses') or ()) or None)
                self.kube.event(run, 'Normal', succeeded, f"{role} done: {message}")
            else:
                updated = statuses.Step(phase='failed', message=f"{role} failed: {message}")
                self.kube.event(run, 'Warning', failed, updated.message)
        if updated.phase != current.phase or updated.uri != current.uri:
            if role == 'writeup':
                state.writeup = updated
            else:
                state.review = updated
            state.save()
        return updated


__all__ = ['Papers']
