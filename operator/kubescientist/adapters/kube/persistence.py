"""A run's engine state: loaded from object storage when the operator (re)starts, saved after every change.

``runs/<ns>/<run>/journal.json`` and ``journal/`` hold the engine's journal (a snapshot and the change records
after it, see ``journal_store``); ``state.json`` the operator's bookkeeping: the
run's uid (a new run with an old name starts afresh), its start time (the wall-clock budget counts from
it), where its template's code is stored (a ConfigMap edited later does not change a running search),
and how the writeup and review went. The operator keeps the loaded state in memory between passes and
is the only writer, so nothing is read back until the next restart.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import pathlib
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from experiment_runtime import load_template
from experiment_runtime.pod import TransferError, unpack
from kubescientist.adapters.driving import Driver
from kubescientist.adapters.kube import agent as llm, naming, statuses
from kubescientist.adapters.kube.clients import Kube
from kubescientist.adapters.kube.journal_store import S3JournalStore
from kubescientist.adapters.kube.storage import S3Config, StorageError, Store, s3_config_of
from kubescientist.adapters.kube.templates import Code, RunTemplate, TemplateProblem, materialise, template_free
from kubescientist.adapters.llm import template_code
from kubescientist.adapters.templates import search_space_of
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Node
from kubescientist.core.proposer import OfflineProposer
from kubescientist.core.spec import RunSpec

log = logging.getLogger('kubescientist.operator')


class Stalled(Exception):
    """The run cannot go on until someone fixes something (a missing Secret, a bad template)."""


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))


@dataclasses.dataclass
class RunState:
    """A run's engine and what was loaded for it, kept between passes (rebuilt after a restart)."""

    uid: str
    store: Store
    spec: RunSpec
    engine: Engine
    template: RunTemplate
    proposer: OfflineProposer
    start_time: str
    writeup: statuses.Step
    review: statuses.Step
    journal_store: S3JournalStore
    """Appends the journal's changes to object storage."""
    node_uids: dict[str, str] = dataclasses.field(default_factory=dict)
    """ExperimentNode name -> uid (the owner of its Jobs)."""
    written: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """ExperimentNode name -> the status last written (or seen), to write only changes."""
    expired: set[str] = dataclasses.field(default_factory=set)
    """Jobs given their TTL by this process (the watch shows it a moment later)."""
    settled: dict[str, int] = dataclasses.field(default_factory=dict)
    """ExperimentNode name -> the run generation its final status was written for: not looked at again."""
    unseen_jobs: dict[str, tuple[dict[str, Any], datetime.datetime]] = dataclasses.field(default_factory=dict)
    """Jobs this process created that the watch had not delivered yet (and when): a pass soon after their
    creation sees them, rather than creating them again."""
    run_status: dict[str, Any] | None = None
    """The run status this process last wrote (or is writing): what the next pass compares with."""
    events_seen: int = 0
    """Journal events already turned into Kubernetes Events."""
    records: bool = False
    """Whether the records the writeup reads are in object storage."""
    agent: llm.KubeAgent | None = None
    """The run's LLM agent (None for an offline run): proposals, node reviews, stage judgements."""
    llm_stopped: str | None = None
    """Why no new LLM work starts (a cap reached, the endpoint gone), once that happened."""
    driver: Driver = dataclasses.field(init=False)
    """Drives the engine: folds finished nodes, judges, fills free slots."""

    def __post_init__(self) -> None:
        self.driver = Driver(self.engine, self.proposer, self.agent, prepare=self._prepare)

    def _prepare(self, node: Node) -> None:
        node.code_hash = self.template.code_for(node.config, self.store).hash

    @property
    def journal(self) -> Journal:
        return self.engine.journal

    def save_journal(self) -> None:
        if self.agent is not None:
            self.agent.save()
        self.journal_store.save(self.journal)

    def save(self) -> None:
        self.store.put_json(self.store.run_key('state.json'), {
            'uid': self.uid, 'startTime': self.start_time, 'records': self.records,
            'template': {'sha256': self.template.code.sha256, 'key': self.template.code.key}
            if self.template.code is not None else None,
            'writeup': self.writeup.to_dict(), 'review': self.review.to_dict()})


def s3_config(run: Mapping[str, Any], kube: Kube, operator_endpoint: str = '') -> S3Config:
    """The run's object storage, with the identity from the Secret it names (read by the operator only)."""
    s3 = (run['spec'].get('storage') or {}).get('s3') or {}
    secret_name = (s3.get('secretRef') or {}).get('name')
    secret = kube.get('v1', 'secrets', run['metadata']['namespace'], secret_name) if secret_name else None
    try:
        return s3_config_of(run, secret, operator_endpoint)
    except StorageError as err:
        raise Stalled(str(err)) from None


def load(run: Mapping[str, Any], spec: RunSpec, kube: Kube, store: Store, now: datetime.datetime) -> RunState:
    """The run's state from object storage (or a fresh one for a new run), its template, its ExperimentNodes."""
    meta = run['metadata']
    namespace, name, uid = meta['namespace'], meta['name'], meta['uid']
    saved = store.get_json(store.run_key('state.json'))
    if not (isinstance(saved, dict) and saved.get('uid') == uid):
        saved = None  # a new run, or an older run of the same name: start afresh
    journal_store = S3JournalStore(store, uid)
    journal = (journal_store.load() if saved else None) or Journal()
    try:  # offline too: a run whose idea cannot be found must not start (the CRD says so)
        idea = llm.resolve_idea(run, spec, kube)
    except llm.AgentProblem as err:
        raise Stalled(str(err)) from None
    if saved and saved.get('template'):
        template = reload_template(store, saved['template'])
    elif spec.template is None and llm.llm_enabled(spec):
        template = template_free(idea.title)
    elif spec.template is None:
        raise TemplateProblem("spec.template: absent, so the run is template-free and needs an LLM to write code; "
                              "set spec.llm (baseURL, models), or spec.template.configMapRef or s3 to run offline")
    else:
        template = materialise(spec.template, store, lambda cm: kube.get('v1', 'configmaps', namespace, cm),
                               lambda bucket, key: store.get(key, bucket))
    agent = None
    if llm.llm_enabled(spec):
        try:
            code = template_code(template.root, template.space, spec.template.args if spec.template else ()) \
                if template.template is not None else None
            agent = llm.build(run, spec, kube, store, idea, code)
        except llm.AgentProblem as err:
            template.close()
            raise Stalled(str(err)) from None
    running = [n.id for n in journal.unfinished() if n.status == 'running']
    # With an LLM, it judges each stage's best (and whether a stage met its goal early), as in local runs.
    # Nodes that were running still run in the cluster (no requeue_running): each pass reattaches them to
    # their Jobs (or creates the Job the crash prevented).
    engine = Engine(spec, journal, judged=agent is not None)
    if agent is not None:
        agent.journal = journal
    disabled = statuses.Step(phase='disabled')
    state = RunState(
        uid=uid, store=store, spec=spec, engine=engine, template=template,
        proposer=OfflineProposer(template.space, spec.seed),
        start_time=saved['startTime'] if saved else rfc3339(now),
        writeup=statuses.Step.from_dict(saved.get('writeup') if saved else None,
                                        statuses.Step() if spec.writeup else disabled),
        review=statuses.Step.from_dict(saved.get('review') if saved else None,
                                       statuses.Step() if spec.review and spec.writeup else disabled),
        journal_store=journal_store,
        events_seen=len(journal.events),
        records=bool(saved and saved.get('records')),
        agent=agent,
        llm_stopped=agent.ledger.stopped if agent is not None else None,
    )
    for obj in kube.list(naming.API_VERSION, naming.NODES, namespace, naming.run_selector(name)):
        state.node_uids[obj['metadata']['name']] = obj['metadata']['uid']
        state.written[obj['metadata']['name']] = dict(obj.get('status') or {})
    if not saved:
        state.save()
    log.info("run %s/%s loaded: %d nodes, %d running, template %s", namespace, name, len(journal.nodes),
             len(running), template.label)
    return state


def reload_template(store: Store, saved: Mapping[str, Any]) -> RunTemplate:
    """The run's template as it was stored when the run started (the ConfigMap may have changed since)."""
    data = store.get(saved['key'])
    if data is None:
        raise Stalled(f"the run's code {store.uri(saved['key'])} is missing from object storage")
    root = pathlib.Path(tempfile.mkdtemp(prefix='ks-template-'))
    try:
        unpack(data, root)
    except TransferError as err:
        raise Stalled(f"the run's code {store.uri(saved['key'])}: {err}") from None
    template = load_template(root)
    code = Code(sha256=saved['sha256'], key=saved['key'], uri=store.uri(saved['key']))
    return RunTemplate(root=root, template=template, space=search_space_of(template), code=code)


StoreFactory = Callable[[S3Config, str, str], Store]
