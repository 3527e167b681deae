"""The engine: stages, best-first selection with debugging, seed re-evaluation, budgets.

It is driven from outside, one fact at a time, so that a free slot gets new work the moment it frees
(asynchronous refill, no lock-step batches):

    plan = engine.plan(elapsed)            # what should the free slot do?
    node = engine.commit(plan, proposal)   # the proposer's config becomes a pending node
    engine.start(node.id); ...; engine.complete(node.id, outcome)

Every decision lands in the journal with its reason. The engine keeps no other state except the plans
handed out and not yet committed, which a crash may lose harmlessly: they are planned again.
"""

from __future__ import annotations

import random

from kubescientist.core.journal import Journal, Node, NodeConfig, Outcome, StageRecord
from kubescientist.core.objective import ObjectiveMissing, objective_value, sort_key
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.spec import STAGE_NAMES, Action, RunSpec, StageName
from kubescientist.core.summary import run_best

MAX_ATTEMPTS = 3
"""How often a node is started again after infrastructure failures before it counts as failed."""


class Engine:
    def __init__(self, spec: RunSpec, journal: Journal, *, judged: bool = False) -> None:
        """``judged``: a judge (the LLM) picks each stage's best; the stage waits in ``judging`` for it."""
        self.spec = spec
        self.journal = journal
        self.judged = judged
        self._reserved: list[Plan] = []
        self._stop_reason: str | None = None
        if not journal.stages:
            journal.stages = [StageRecord(name=name) for name in STAGE_NAMES]
            self._begin_stage(journal.stages[0], root=None)
        # Nodes that were running when the previous process died never reported: run them again.
        for node in journal.nodes.values():
            if node.status == "running":
                node.status = "pending"

    # -- queries -------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.journal.phase != "searching" and not self.journal.unfinished()

    def current_stage(self) -> StageRecord | None:
        return next((s for s in self.journal.stages if s.status == "searching"), None)

    def awaiting_judgement(self) -> StageRecord | None:
        """The stage whose search ended and whose best the judge must pick, if any."""
        return next((s for s in self.journal.stages if s.status == "judging"), None)

    def candidates(self, record: StageRecord) -> list[Node]:
        """The nodes a stage's best is chosen from: its good search nodes, and its root."""
        nodes = [n for n in self.journal.in_stage(record.name) if n.good]
        root = self.journal.nodes.get(record.root) if record.root else None
        if root is not None and root.good:
            nodes.append(root)
        return nodes

    def next_pending(self) -> Node | None:
        """A committed node that is not running yet (new, or to be restarted)."""
        return next((n for n in self.journal.nodes.values() if n.status == "pending"), None)

    def best(self) -> Node | None:
        return run_best(self.spec, self.journal)

    # -- decisions -----------------------------------------------------------------------------------

    def plan(self, elapsed_seconds: float) -> Plan | None:
        """What a free slot should do now, or None if nothing (waiting on running nodes, or over)."""
        if self.journal.phase != "searching" or self.spec.suspend or self._stop_reason:
            return None
        reason = self._budget_exhausted(elapsed_seconds)
        if reason:
            self._stop(reason)
            return None
        while True:
            plan = self._seed_plan() or self._search_plan()
            if plan is not None:
                self._reserved.append(plan)
                return plan
            stage = self.current_stage()
            if stage is None or not self._idle(stage.name):
                return None
            self._end_stage(stage, "nothing left to try: every parent's options are exhausted")
            self._maybe_finish()
            if self.journal.phase != "searching":
                return None

    def commit(self, plan: Plan, proposal: Proposal | None = None) -> Node | None:
        """Turn a plan and its proposal into a pending node; None if the proposer had nothing new.

        A plan that carries its own config (a seed re-evaluation) needs no proposal.
        """
        self._reserved.remove(plan)
        journal = self.journal
        if plan.config is not None:
            proposal = Proposal(plan.config, f"same program and parameters, seed {plan.config.seed}")
        if proposal is None:
            journal.record("exhausted", f"{plan.action} of {plan.parent or 'a new draft'}: nothing new to "
                           "propose", plan.stage)
            journal.exhausted.append([plan.parent or "", plan.action])
            return None
        if plan.action != "seed":
            key = proposal.config.key()
            twin = next((n for n in journal.nodes.values() if n.action != "seed" and n.config.key() == key), None)
            if twin is not None:
                # Counted as exhausted: a deterministic proposer would repeat itself for ever otherwise.
                journal.record("duplicate", f"{plan.action} of {plan.parent or 'a new draft'}: proposal repeats "
                               f"{twin.id}, rejected; no more {plan.action} from this parent", plan.stage)
                journal.exhausted.append([plan.parent or "", plan.action])
                return None
        seq = len(journal.nodes)
        node = journal.add(Node(
            id=f"n{seq:04d}", seq=seq, stage=plan.stage, action=plan.action, parent=plan.parent,
            config=proposal.config, reason=f"{plan.reason}; {proposal.summary}"))
        if plan.action == "seed":
            journal.stage(plan.stage).seed_nodes.append(node.id)
        return node

    def release(self, plan: Plan) -> None:
        """Forget a plan that will not be committed because its proposer could not work (an LLM budget cap,
        an unreachable endpoint); unlike ``commit(plan, None)`` it marks nothing as exhausted."""
        self._reserved.remove(plan)
        self._advance()

    def stop(self, reason: str) -> None:
        """Start no new node from now on, for a reason outside the engine; running nodes finish and count.
        Stages end as they would at a spent budget, so the run ends with what it has."""
        if self._stop_reason is None:
            self._stop(reason)

    def judge(self, stage: StageName, best: str, reason: str) -> None:
        """The judge's pick of a stage's best node; a pick that is not a candidate falls back to the metric."""
        record = self.journal.stage(stage)
        if record.status != "judging":
            raise ValueError(f"stage {stage} is not waiting for a judgement (it is {record.status})")
        candidates = {n.id for n in self.candidates(record)}
        if best not in candidates:
            self.journal.record("judgement", f"stage {stage}: the judge picked {best}, not a candidate; "
                                "the metric decides", stage)
            best, reason = self._best_by_metric(record).id, "best by metric (the judge's pick was invalid)"
        self._conclude_stage(record, self.journal.nodes[best], f"{record.end_reason}; judged: {reason}")
        self._maybe_finish()

    def goal_met(self, stage: StageName, reason: str) -> None:
        """A judge found the stage's goal met: no new search node; the stage ends once its nodes finish."""
        record = self.journal.stage(stage)
        if record.status == "searching" and record.goal_met is None:
            record.goal_met = reason
            self.journal.record("goal-met", f"stage {stage}: goal judged met ({reason})", stage)
            self._advance()

    def start(self, node_id: str) -> Node:
        node = self.journal.nodes[node_id]
        node.status = "running"
        node.attempts += 1
        return node

    def complete(self, node_id: str, outcome: Outcome) -> Node:
        """Fold a finished node's outcome into the tree and advance stages."""
        node = self.journal.nodes[node_id]
        if outcome.infrastructure:
            if node.attempts < MAX_ATTEMPTS:
                node.status = "pending"
                self.journal.record("retry", f"{node.id}: infrastructure failure ({outcome.reason}); "
                                    f"attempt {node.attempts} of {MAX_ATTEMPTS}", node.stage)
                return node
            node.status, node.outcome = "failed", outcome
        elif outcome.buggy:
            node.status, node.outcome = "buggy", outcome
        else:
            try:
                outcome.metric = objective_value(self.spec.objective, outcome.metrics)
                node.status = "succeeded"
            except ObjectiveMissing as exc:
                outcome.buggy, outcome.reason = True, f"objective not reported: {exc}"
                node.status = "buggy"
            node.outcome = outcome
        self._advance()
        return node

    # -- stages --------------------------------------------------------------------------------------

    def _begin_stage(self, record: StageRecord, root: str | None) -> None:
        record.status, record.root = "searching", root
        goal = self.spec.stage(record.name).goal
        self.journal.record("stage-started", f"stage {record.name} starts" +
                            (f" from {root}" if root else "") + (f"; goal: {goal}" if goal else ""), record.name)

    def _advance(self) -> None:
        stage = self.current_stage()
        if stage is not None:
            good = [n for n in self.journal.in_stage(stage.name) if n.good]
            budget = self.spec.stage(stage.name).max_nodes
            if stage.name == "initial" and good:
                first = min(good, key=lambda n: n.seq)
                self._end_stage(stage, f"goal met: {first.id} is a working implementation")
            elif self._stop_reason and self._idle(stage.name):
                self._end_stage(stage, f"stopped: {self._stop_reason}")
            elif stage.goal_met and self._idle(stage.name):
                self._end_stage(stage, f"goal met: {stage.goal_met}")
            elif self._created(stage.name) >= budget and self._idle(stage.name):
                self._end_stage(stage, f"node budget of {budget} used")
        self._maybe_finish()

    def _end_stage(self, record: StageRecord, reason: str) -> None:
        journal = self.journal
        if self._stop_reason and record.name != "initial" and not any(True for _ in journal.in_stage(record.name)):
            record.status, record.end_reason = "skipped", reason
            self._skip_waiting(f"not started: {self._stop_reason}")
            return
        if not self.candidates(record):
            record.status, record.end_reason = "failed", reason
            self._skip_waiting(f"not started: stage {record.name} failed")
            journal.record("stage-ended", f"stage {record.name} failed: no working implementation ({reason})",
                           record.name)
            self._finish("failed", f"stage {record.name} produced no working implementation: {reason}")
            return
        if self.judged and len(self.candidates(record)) > 1:
            record.status, record.end_reason = "judging", reason
            journal.record("stage-judging", f"stage {record.name}: search ends ({reason}); the judge picks the "
                           "best node", record.name)
            return
        self._conclude_stage(record, self._best_by_metric(record), reason)

    def _best_by_metric(self, record: StageRecord) -> Node:
        direction = self.spec.objective.direction
        return min(self.candidates(record), key=lambda n: (sort_key(n.metric or 0.0, direction), n.seq))

    def _conclude_stage(self, record: StageRecord, best: Node, reason: str) -> None:
        journal = self.journal
        record.status, record.best, record.end_reason = "done", best.id, reason
        kept = " (no node of this stage beat its root)" if best.id == record.root else ""
        journal.record("stage-ended", f"stage {record.name} ends ({reason}); best {best.id} "
                       f"{self.spec.objective.metric}={best.metric:.6g}{kept}", record.name)
        following = [s for s in journal.stages if s.status == "waiting"]
        if self._stop_reason:
            self._skip_waiting(f"not started: {self._stop_reason}")
        elif following:
            self._begin_stage(following[0], root=best.id)

    def _skip_waiting(self, reason: str) -> None:
        for record in self.journal.stages:
            if record.status == "waiting":
                record.status, record.end_reason = "skipped", reason

    def _maybe_finish(self) -> None:
        if self.journal.phase != "searching" or self.journal.unfinished() or self._reserved:
            return
        if any(s.status in ("waiting", "searching", "judging") for s in self.journal.stages):
            return
        if self._seed_plan(peek=True) is not None:
            return
        best = self.best()
        assert best is not None
        self._finish("succeeded", f"search complete; best node {best.id} "
                     f"({self.spec.objective.metric}={best.metric:.6g})")

    def _finish(self, phase: str, message: str) -> None:
        assert phase in ("succeeded", "failed")
        self.journal.phase = "succeeded" if phase == "succeeded" else "failed"
        self.journal.message = message
        self.journal.record("run-ended", message)

    def _stop(self, reason: str) -> None:
        self._stop_reason = reason
        self.journal.record("budget", f"no new nodes: {reason}")
        self._advance()

    def _budget_exhausted(self, elapsed_seconds: float) -> str | None:
        budget = self.spec.budget
        if budget.wall_clock_seconds is not None and elapsed_seconds >= budget.wall_clock_seconds:
            return f"wall-clock budget of {budget.wall_clock_seconds}s used"
        total = len(self.journal.nodes) + len(self._reserved)
        if budget.max_total_nodes is not None and total >= budget.max_total_nodes:
            return f"total node budget of {budget.max_total_nodes} used"
        return None

    # -- selection -----------------------------------------------------------------------------------

    def _created(self, stage: StageName) -> int:
        reserved = sum(1 for p in self._reserved if p.stage == stage and p.action != "seed")
        return sum(1 for _ in self.journal.in_stage(stage)) + reserved

    def _idle(self, stage: StageName) -> bool:
        """Whether no search node of the stage is unfinished or planned."""
        return (all(n.status in ("succeeded", "buggy", "failed") for n in self.journal.in_stage(stage))
                and not any(p.stage == stage and p.action != "seed" for p in self._reserved))

    def _rng_seed(self) -> str:
        return f"{self.spec.seed}:{len(self.journal.nodes)}:{len(self._reserved)}:{len(self.journal.exhausted)}"

    def _exhausted(self, parent: str | None, action: str) -> bool:
        return [parent or "", action] in self.journal.exhausted

    def _in_use(self, node_id: str) -> bool:
        return any(True for _ in self.journal.children(node_id)) or any(p.parent == node_id for p in self._reserved)

    def _seed_plan(self, peek: bool = False) -> Plan | None:
        if self.spec.seeds <= 0 or self._stop_reason:
            return None
        for record in self.journal.stages:
            if record.best is None or record.best == record.root:
                continue
            planned = sum(1 for p in self._reserved if p.action == "seed" and p.stage == record.name)
            done = len(record.seed_nodes) + planned
            if done >= self.spec.seeds:
                continue
            if peek:
                return Plan(record.name, "seed", record.best, "", "")
            best = self.journal.nodes[record.best]
            seed = self.spec.seed + 1 + done
            config = NodeConfig(seed=seed, params=dict(best.config.params), variant=best.config.variant,
                                ablation=best.config.ablation, code=best.config.code)
            return Plan(record.name, "seed", best.id,
                        f"re-evaluate stage {record.name}'s best {best.id} with seed {seed} "
                        f"({done + 1} of {self.spec.seeds})", self._rng_seed(), config)
        return None

    def _debuggable(self, stage: StageName) -> list[Node]:
        limit = self.spec.search.max_debug_depth
        return [n for n in self.journal.in_stage(stage)
                if n.status == "buggy" and not self._in_use(n.id) and not self._exhausted(n.id, "debug")
                and self.journal.debug_depth(n) < limit]

    def _debug_plan(self, stage: StageName, rng: random.Random, why: str) -> Plan | None:
        leaves = self._debuggable(stage)
        if not leaves:
            return None
        leaf = rng.choice(leaves)
        error = (leaf.outcome.reason if leaf.outcome else None) or "unknown error"
        depth = self.journal.debug_depth(leaf)
        return Plan(stage, "debug", leaf.id, f"debug {leaf.id} ({why}; buggy: {error[:200]}; debug depth "
                    f"{depth} < {self.spec.search.max_debug_depth})", self._rng_seed())

    def _search_plan(self) -> Plan | None:
        stage = self.current_stage()
        if stage is None or stage.goal_met or self._created(stage.name) >= self.spec.stage(stage.name).max_nodes:
            return None
        rng = random.Random(self._rng_seed())
        name = stage.name
        search = self.spec.search
        if name == "initial":
            drafts = sum(1 for n in self.journal.in_stage(name) if n.action == "draft")
            drafts += sum(1 for p in self._reserved if p.action == "draft")
            if drafts < search.drafts and not self._exhausted(None, "draft"):
                return Plan(name, "draft", None, f"draft {drafts + 1} of {search.drafts}", self._rng_seed())
            return self._debug_plan(name, rng, "no working implementation yet")
        draw = rng.random()
        if draw < search.debug_probability:
            plan = self._debug_plan(name, rng, f"draw {draw:.2f} < p={search.debug_probability}")
            if plan is not None:
                return plan
        return self._expansion(stage, rng) or self._debug_plan(name, rng, "nothing else to expand")

    def _expansion(self, stage: StageRecord, rng: random.Random) -> Plan | None:
        name, root = stage.name, stage.root
        assert root is not None
        if name == "research" and not self._exhausted(root, "variant"):
            return Plan(name, "variant", root, f"next research-agenda variant on the stage root {root}",
                        self._rng_seed())
        if name == "ablation":
            if self._exhausted(root, "ablate"):
                return None
            return Plan(name, "ablate", root, f"switch one component off the stage root {root}", self._rng_seed())
        action: Action = "tune" if name == "tuning" else "improve"
        direction = self.spec.objective.direction
        ranked = [n for n in self.journal.in_stage(name) if n.good]
        ranked.append(self.journal.nodes[root])
        ranked.sort(key=lambda n: (sort_key(n.metric or 0.0, direction), n.seq))
        for rank, parent in enumerate(ranked):
            if self._exhausted(parent.id, action):
                continue
            assert parent.metric is not None
            note = "best-first: the stage's best node" if rank == 0 else f"best-first: rank {rank + 1} " \
                "(better nodes are exhausted)"
            return Plan(name, action, parent.id, f"{note} {parent.id} "
                        f"({self.spec.objective.metric}={parent.metric:.6g})", self._rng_seed())
        return None

