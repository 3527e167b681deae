"""The campaign controller: a ResearchCampaign becomes ResearchRuns, round after round.

Each pass observes (the campaign, its ideas, its runs) and acts on the core's ``next_step``. Nothing it needs
lives in memory, so an operator killed at any point loses and duplicates nothing:

- a run's name is ``<campaign>-<idea>`` (deterministic): a second create is a harmless 409;
- the ideas of a round proposed by the LLM are written to a ConfigMap ``<campaign>-round-<n>`` (owned by the
  campaign) before anything acts on them, so a restart finds them instead of proposing again; ideation's own
  LLM use is kept there too and counts against the campaign budget;
- the runs say what became of each idea (labels ``kubescientist.io/campaign`` and ``kubescientist.io/idea``).

The ideation of round n+1 gets ``ideation_feedback``: every earlier run's review score and weaknesses (from
the ResearchRun's status.review), its best metric, or why it failed or was dropped.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubescientist.adapters import metrics
from kubescientist.adapters.campaign_manifest import run_template_problems
from kubescientist.adapters.manifest import apply_defaults, crd_schema
from kubescientist.adapters.kube import naming, persistence, statuses
from kubescientist.adapters.kube.agent import AgentProblem, api_key, client_env
from kubescientist.adapters.kube.clients import Kube, config_map_json, config_map_text
from kubescientist.adapters.kube.manifests import Owner
from kubescientist.agent.config import from_settings
from kubescientist.agent.errors import AgentError
from kubescientist.agent.ideas import Ideator, parse_topic
from kubescientist.agent.literature import OfflineCorpus, source_from_env
from kubescientist.agent.llm import LLMClient
from kubescientist.core.campaign import (
    CampaignError, CampaignIdea, CampaignSpec, IdeaRecord, RunReport, Step, Usage, campaign_spec_from_dict,
    ideas_from_entries, ideation_feedback, next_step, run_name, run_spec, spec_problems, status)
from kubescientist.core.spec import run_spec_from_dict

log = logging.getLogger('kubescientist.campaigns')

CAMPAIGNS = naming.CAMPAIGNS
CAMPAIGN_LABEL = 'kubescientist.io/campaign'
"""The campaign a run or a round's ideas ConfigMap belongs to."""
IDEA_LABEL = 'kubescientist.io/idea'
"""The idea a run pursues."""
ROUND_LABEL = 'kubescientist.io/round'
"""The round that proposed a run's idea, or that a ConfigMap holds the ideas of."""
IDEAS_KEY = 'ideas.json'
"""The ConfigMap key of a round's ideas (an ideas-file list, each entry with its ``novelty`` verdict)."""
USAGE_KEY = 'usage.json'
"""The ConfigMap key of the LLM use of a round's ideation (tokens, usd)."""

Proposer = Callable[[Mapping[str, Any], CampaignSpec, int, str, Sequence[Mapping[str, Any]]],
                    tuple[list[dict[str, Any]], Usage]]
"""(campaign, spec, round, feedback, earlier entries) -> (the round's new idea entries, ideation's LLM use)."""


class CampaignProblem(Exception):
    """The campaign cannot go on as written (a missing ConfigMap, an invalid runTemplate); the message says
    which field."""


def _selector(campaign: str) -> str:
    return f'{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY},{CAMPAIGN_LABEL}={campaign}'


def round_config_map(campaign: str, round_: int) -> str:
    """The ConfigMap holding the ideas round ``round_`` proposed."""
    return run_name(campaign, f'round-{round_}')


def report_of(idea: str, run: Mapping[str, Any]) -> RunReport:
    """A ResearchRun's status as the campaign sees it."""
    state = run.get('status') or {}
    phase = state.get('phase')
    review = state.get('review') or {}
    cost = state.get('cost') or {}
    best = state.get('bestNode') or {}
    score = review.get('overall')
    metric = best.get('metric')
    return RunReport(
        idea=idea, run=run['metadata']['name'],
        phase='succeeded' if phase == 'Succeeded' else 'failed' if phase == 'Failed' else
        'pending' if phase in (None, 'Pending') else 'running',
        score=float(score) if isinstance(score, (int, float)) else None,
        decision=str(review.get('decision') or ''),
        weaknesses=tuple(str(w) for w in review.get('weaknesses') or ()),
        metric=float(metric) if isinstance(metric, (int, float)) else None,
        message=str(state.get('message') or ''),
        tokens=int(cost.get('promptTokens') or 0) + int(cost.get('completionTokens') or 0),
        usd=float(cost.get('usd') or 0.0), gpu_hours=float(cost.get('gpuSeconds') or 0.0) / 3600.0)


def llm_proposer(kube: Kube) -> Proposer:
    """Ideation by the campaign's LLM (runTemplate.llm, its key from the Secret), in the operator process."""

    def propose(campaign: Mapping[str, Any], spec: CampaignSpec, round_: int, feedback: str,
                earlier: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], Usage]:
        # The template as the apiserver stores it (defaulted); defaults again for a spec read from elsewhere.
        run = run_spec_from_dict(apply_defaults(crd_schema('ResearchRun')['properties']['spec'], copy.deepcopy(
            run_spec(spec.run_template, CampaignIdea('ideation', 'ideation')))))
        topic = parse_topic(_topic_text(kube, campaign, spec), 'spec.topic')
        try:
            config = from_settings(run.llm, client_env(api_key(campaign, run, kube)))
        except (AgentError, AgentProblem) as err:
            raise CampaignProblem(f"spec.runTemplate.llm: {err}") from None

        async def go() -> tuple[list[dict[str, Any]], Usage]:
            client = LLMClient(config)
            source = OfflineCorpus([]) if spec.literature == 'offline' else source_from_env(spec.literature)
            try:
                made = await Ideator(client, source, reflections=spec.reflections,
                                     novelty_check=spec.novelty_check).generate(
                    topic, spec.ideas_per_round, earlier, feedback=feedback)
            finally:
                await client.aclose()
                await source.aclose()
            total = client.ledger.to_dict()['total']
            return made, Usage(tokens=int(total['promptTokens']) + int(total['completionTokens']),
                               usd=float(total['usd']))

        return asyncio.run(go())

    return propose


def _topic_text(kube: Kube, campaign: Mapping[str, Any], spec: CampaignSpec) -> str:
    if spec.topic is not None:
        return spec.topic
    ref = (campaign['spec'].get('topic') or {}).get('configMapRef') or {}
    return _config_map_text(kube, campaign, ref, 'topic.md', 'spec.topic.configMapRef')


def _config_map_text(kube: Kube, campaign: Mapping[str, Any], ref: Mapping[str, Any], default_key: str,
                     field: str) -> str:
    """The text of a ``configMapRef`` of the campaign's spec (its key, else ``default_key``)."""
    return config_map_text(kube, campaign['metadata']['namespace'], ref.get('name', ''),
                           ref.get('key') or default_key, field, CampaignProblem)


class CampaignReconciler:
    def __init__(self, kube: Kube, propose: Proposer | None = None,
                 clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.timezone.utc),
                 resync_seconds: float = 15.0) -> None:
        self.kube = kube
        self.propose = propose or llm_proposer(kube)
        self.clock = clock
        self.resync_seconds = resync_seconds

    def reconcile(self, campaign: Mapping[str, Any]) -> float:
        """One pass over one campaign; returns the seconds after which the next unprompted pass is due."""
        meta = campaign['metadata']
        previous = campaign.get('status') or {}
        generation = int(meta.get('generation') or 0)
        known = [str(i.get('name')) for i in previous.get('ideas') or ()]
        problems = spec_problems(campaign['spec'], known) + run_template_problems(campaign['spec'].get('runTemplate'))
        if problems:
            return self._failed(campaign, previous, generation, '; '.join(problems))
        spec = campaign_spec_from_dict(campaign['spec'])
        try:
            ideas, used = self._ideas(campaign, spec)
            runs = self._runs(campaign, ideas)
            step = next_step(spec, ideas, runs, ideation_used=used)
            if step.ideate is not None:
                self._ideate(campaign, spec, step.ideate, ideas, runs)
                ideas, used = self._ideas(campaign, spec)
                step = next_step(spec, ideas, runs, ideation_used=used)
            for idea in step.start:
                runs[idea.name] = report_of(idea.name, self._create_run(campaign, idea))
            if step.start:
                step = next_step(spec, ideas, runs, ideation_used=used)
        except (CampaignProblem, CampaignError, AgentError) as err:
            return self._failed(campaign, previous, generation, str(err))
        direction = (spec.run_template.get('objective') or {}).get('direction', 'maximize')
        desired = status(spec, step, ideas, runs, direction=direction, ideation_used=used)
        self._post_events(campaign, previous, desired)
        self._write(campaign, previous, desired, step, generation)
        return self.resync_seconds

    # -- observing -----------------------------------------------------------------------------------

    def _ideas(self, campaign: Mapping[str, Any], spec: CampaignSpec) -> tuple[list[IdeaRecord], Usage]:
        """Every idea so far with why it was dropped, and ideation's LLM use: the fixed list, or each
        proposed round's ConfigMap in round order."""
        if not spec.open_ended:
            return [IdeaRecord(i) for i in self._fixed_ideas(campaign, spec)], Usage()
        namespace, name = campaign['metadata']['namespace'], campaign['metadata']['name']
        records: list[IdeaRecord] = []
        tokens, usd = 0, 0.0
        maps = self.kube.list('v1', 'configmaps', namespace, _selector(name))
        for config_map in sorted(maps, key=lambda m: int(m['metadata']['labels'].get(ROUND_LABEL, '0'))):
            round_ = int(config_map['metadata']['labels'].get(ROUND_LABEL, '0'))
            data = config_map.get('data') or {}
            entries = json.loads(data.get(IDEAS_KEY) or '[]')
            usage = json.loads(data.get(USAGE_KEY) or '{}')
            tokens, usd = tokens + int(usage.get('tokens', 0)), usd + float(usage.get('usd', 0.0))
            made = ideas_from_entries(entries, round=round_, taken=[r.idea.name for r in records])
            for entry, idea in zip(entries, made):
                verdict = (entry.get('novelty') or {})
                dropped = f"not novel: {verdict.get('reason', '')}".strip() \
                    if spec.novelty_check and verdict.get('verdict') == 'not novel' else ''
                records.append(IdeaRecord(idea, dropped=dropped[:1024]))
        return records, Usage(tokens=tokens, usd=usd)

    def _fixed_ideas(self, campaign: Mapping[str, Any], spec: CampaignSpec) -> list[CampaignIdea]:
        if spec.ideas:
            return list(spec.ideas)
        source = campaign['spec'].get('ideas') or {}
        if source.get('configMapRef'):
            ref, field = source['configMapRef'], 'spec.ideas.configMapRef'
            key = ref.get('key') or 'ideas.json'
        else:
            ref = (spec.run_template.get('template') or {}).get('configMapRef')
            if not ref:
                raise CampaignProblem("spec.ideas.seedIdeas: in a cluster the template must be a ConfigMap "
                                      "(runTemplate.template.configMapRef) holding seed_ideas.json")
            key, field = 'seed_ideas.json', 'spec.ideas.seedIdeas'
        entries = config_map_json(self.kube, campaign['metadata']['namespace'], ref.get('name', ''), key, field,
                                  CampaignProblem, list)
        try:
            return ideas_from_entries(entries)
        except CampaignError as err:
            raise CampaignProblem(f"{field}: {err}") from None

    def _runs(self, campaign: Mapping[str, Any], ideas: Sequence[IdeaRecord]) -> dict[str, RunReport]:
        namespace, name = campaign['metadata']['namespace'], campaign['metadata']['name']
        known = {r.idea.name for r in ideas}
        out = {}
        for run in self.kube.list(naming.API_VERSION, naming.RUNS, namespace, _selector(name)):
            idea = (run['metadata'].get('labels') or {}).get(IDEA_LABEL, '')
            if idea in known:
                out[idea] = report_of(idea, run)
        return out

    # -- acting --------------------------------------------------------------------------------------

    def _owner(self, campaign: Mapping[str, Any]) -> dict[str, Any]:
        meta = campaign['metadata']
        return Owner(naming.API_VERSION, 'ResearchCampaign', meta['name'], meta['uid']).reference()

    def _labels(self, campaign: Mapping[str, Any], **extra: str) -> dict[str, str]:
        return {naming.MANAGED_BY_LABEL: naming.MANAGED_BY, CAMPAIGN_LABEL: campaign['metadata']['name'], **extra}

    def _ideate(self, campaign: Mapping[str, Any], spec: CampaignSpec, round_: int, ideas: Sequence[IdeaRecord],
                runs: Mapping[str, RunReport]) -> None:
        """Propose round ``round_``'s ideas and write them down (the ConfigMap) before anything acts on them."""
        feedback = ideation_feedback(ideas, runs)
        earlier = [{'name': r.idea.name, 'title': r.idea.title, 'shortHypothesis': r.idea.hypothesis} for r in ideas]
        made, usage = self.propose(campaign, spec, round_, feedback, earlier)
        meta = campaign['metadata']
        self.kube.create({
            'apiVersion': 'v1', 'kind': 'ConfigMap',
            'metadata': {'name': round_config_map(meta['name'], round_), 'namespace': meta['namespace'],
                         'labels': self._labels(campaign, **{ROUND_LABEL: str(round_)}),
                         'ownerReferences': [self._owner(campaign)]},
            'data': {IDEAS_KEY: json.dumps(made), USAGE_KEY: json.dumps({'tokens': usage.tokens, 'usd': usage.usd}),
                     'feedback.txt': feedback},
        })
        self.kube.event(campaign, 'Normal', 'IdeasProposed', f"round {round_}: {len(made)} idea(s) proposed"
                        + (" with the earlier runs' reviews and results" if feedback else ""))

    def _create_run(self, campaign: Mapping[str, Any], idea: CampaignIdea) -> dict[str, Any]:
        meta = campaign['metadata']
        name = run_name(meta['name'], idea.name)
        return self.kube.create({
            'apiVersion': naming.API_VERSION, 'kind': 'ResearchRun',
            'metadata': {'name': name, 'namespace': meta['namespace'],
                         'labels': self._labels(campaign, **{IDEA_LABEL: idea.name, ROUND_LABEL: str(idea.round)}),
                         'ownerReferences': [self._owner(campaign)]},
            'spec': run_spec(campaign['spec']['runTemplate'], idea),
        })

    def _post_events(self, campaign: Mapping[str, Any], previous: Mapping[str, Any],
                     desired: Mapping[str, Any]) -> None:
        """One Event per idea whose state changed: proposed, approved, dropped, run, finished."""
        before = {i.get('name'): i.get('state') for i in previous.get('ideas') or ()}
        reasons = {'Proposed': 'IdeaProposed', 'Approved': 'IdeaApproved', 'Dropped': 'IdeaDropped',
                   'Running': 'RunCreated', 'Succeeded': 'RunSucceeded', 'Failed': 'RunFailed'}
        for idea in desired.get('ideas') or ():
            if before.get(idea['name']) != idea['state']:
                detail = idea.get('run') or idea.get('reason') or idea.get('title', '')
                self.kube.event(campaign, 'Warning' if idea['state'] == 'Failed' else 'Normal',
                                reasons[idea['state']], f"idea {idea['name']}: {idea['state'].lower()} ({detail})")

    def _write(self, campaign: Mapping[str, Any], previous: Mapping[str, Any], desired: dict[str, Any],
               step: Step, generation: int) -> None:
        now = persistence.rfc3339(self.clock())
        before = previous.get('conditions') or ()

        def cond(kind: str, value: bool, reason: str, message: str) -> dict[str, Any]:
            return statuses.set_condition(before, kind, value, reason, message, generation, now)

        desired['observedGeneration'] = generation
        desired['conditions'] = [
            cond('Ready', step.phase == 'Succeeded', step.phase, step.message),
            cond('AwaitingApproval', step.phase == 'AwaitingApproval',
                 'IdeasProposed' if step.phase == 'AwaitingApproval' else 'NotWaiting', step.message),
            cond('BudgetExhausted', bool(step.exhausted), 'BudgetExhausted' if step.exhausted else 'WithinBudget',
                 step.exhausted or 'within the campaign budget'),
        ]
        meta = campaign['metadata']
        used = desired.get('used') or {}
        metrics.campaign_observed(meta['namespace'], meta['name'], desired.get('runs') or {}, int(used.get('tokens', 0)),
                                  float(used.get('usd', 0.0)), float(used.get('gpuHours', 0.0)) * 3600.0)
        if any(previous.get(k) != v for k, v in desired.items()):
            self.kube.patch_status(naming.API_VERSION, CAMPAIGNS, campaign['metadata']['namespace'],
                                   campaign['metadata']['name'], desired)

    def _failed(self, campaign: Mapping[str, Any], previous: Mapping[str, Any], generation: int, why: str) -> float:
        step = Step('Failed', round=int(previous.get('round') or 0), message=why)
        self._write(campaign, previous, {'phase': 'Failed', 'message': why[:4096]}, step, generation)
        return self.resync_seconds * 4


__all__ = ['CampaignReconciler', 'CampaignProblem', 'Proposer', 'llm_proposer', 'report_of', 'round_config_map']
