"""The engine: stages, best-first selection with debugging, seed re-evaluation, budgets.

It is driven from outside, one fact at a time, so that a free slot gets new work the moment it frees
(asynchronous refill, no lock-step batches):

    plan = engine.plan(elapsed)            # what should the free slot do?
    node = engine.commit(plan, proposal)   # the proposer's config becomes a pending node
    engine.start(node.id); ...; engine.complete(node.id, outcome)

Every decision lands in the journal with its reason. The engine keeps no other state except the plans
handed out and not yet committed, which a crash may lose harmlessly: they are planned again, and indexes
derived from the journal (rebuilt on construction and by ``update_spec``) so that ``plan``, ``commit`` and
``complete`` cost the same at node 10 as at node 10,000.

``plan`` may be called ahead of a free slot (a driver that prepares proposals while nodes run): each plan is
reserved until committed or released, and counts against the budgets like a node.

No slot idles while work is possible: when a stage has nothing new to search but its last search nodes (or
its contenders' seed runs) still run, free slots first re-evaluate the stage's leading candidates with other
seeds, then start the next stage early from the stage's provisional best. Should the stage's best turn out
to be another node, the next stage is re-rooted on it (its early nodes stay, descending from the provisional
best). With seeds, a stage's best is the candidate with the best seed mean among its
``search.seedCandidates`` leaders, never one lucky run.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Collection

from kubescientist.core.journal import Journal, Node, NodeConfig, NodeStatus, Outcome, StageRecord
from kubescientist.core.objective import ObjectiveMissing, objective_value, seed_stats, sort_key
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.stats import fmt_stats
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
        self._rebuild()
        self._open_gates()  # approved while no process ran

    def requeue_running(self, keep: Collection[str] = ()) -> list[str]:
        """After a restart: nodes that were running when the previous process ended never reported; they
        run again, except those in ``keep``, whose results the driver found and completes (a driver whose
        nodes outlive it, like the operator's Jobs, does not call this)."""
        again = [n for n in self.journal.unfinished() if n.status == "running" and n.id not in keep]
        for node in again:
            self.journal.set_status(node, "pending")
        if again:
            self.journal.record("requeued", f"{', '.join(n.id for n in again)}: running when the previous process "
                                "ended; run again")
        if keep:
            self.journal.record("adopted", f"{', '.join(sorted(keep))}: finished just before the previous process "
                                "ended; their results are kept")
        return [n.id for n in again]

    def update_spec(self, spec: RunSpec) -> None:
        """Take a changed spec (the manifest was edited): budgets, suspension, knobs apply from now on."""
        if spec == self.spec:
            self.spec = spec
            return
        changed = sorted(f.name for f in dataclasses.fields(spec)
                         if f.compare and getattr(spec, f.name) != getattr(self.spec, f.name))
        self.spec = spec
        self.journal.record("spec-changed", f"the spec changed ({', '.join(changed)}); it applies from now on")
        self._rebuild()
        self._open_gates()
        self._advance()

    # -- queries -------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.journal.phase != "searching" and not self.journal.any_unfinished()

    @property
    def reserved(self) -> tuple[Plan, ...]:
        """Plans handed out and neither committed nor released yet (proposals in the making)."""
        return tuple(self._reserved)

    def pending_count(self) -> int:
        """Committed nodes waiting for a slot."""
        return self.journal.pending_count()

    def current_stage(self) -> StageRecord | None:
        return next((s for s in self.journal.stages if s.status == "searching"), None)

    def awaiting_judgement(self) -> StageRecord | None:
        """The stage whose search ended and whose best the judge must pick, if any."""
        return next((s for s in self.journal.stages if s.status == "judging"), None)

    def awaiting_approval(self) -> StageRecord | None:
        """The gated stage (spec.gates) that has ended and waits for approval before the next one starts."""
        if self.journal.phase != "searching":
            return None
        return next((s for s in gate_waiting(self.journal) if self._gated(s.name)), None)

    def gate_message(self, record: StageRecord) -> str:
        """What a person approving the gate needs: the stage's best node and its objective value."""
        best = self.journal.nodes[record.best] if record.best else None
        if best is None or best.metric is None:
            return f"stage {record.name} ended; add {record.name} to spec.approvedGates to go on"
        values = self._seed_values(best.id)
        stats = seed_stats(values)
        value = f"{stats.mean:.6g} (mean of {len(values)} seeds)" if len(values) > 1 else f"{best.metric:.6g}"
        return (f"stage {record.name} ended ({record.end_reason}); best node {best.id} "
                f"{self.spec.objective.metric}={value}; add {record.name} to spec.approvedGates to go on")

    def candidates(self, record: StageRecord) -> list[Node]:
        """The nodes a stage's best is chosen from: its good search nodes (in creation order), and its root."""
        nodes = sorted((self.journal.nodes[i] for _, _, i in self._good.get(record.name, ())), key=lambda n: n.seq)
        root = self.journal.nodes.get(record.root) if record.root else None
        if root is not None and root.good:
            nodes.append(root)
        return nodes

    def next_pending(self) -> Node | None:
        """A committed node that is not running yet (new, or to be restarted)."""
        return self.journal.first_pending()

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
            plan = (self._seed_plan() or self._search_plan(self.current_stage()) or self._idle_slot_plan()
                    or self._early_plan())
            if plan is not None:
                self._reserved.append(plan)
                return plan
            stage = self.current_stage()
            if stage is None or stage.contenders or not self._idle(stage.name):
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
            self._exhaust(plan.parent, plan.action)
            return None
        if plan.action != "seed":
            twin = journal.twin(proposal.config)
            if twin is not None:
                # Counted as exhausted: a deterministic proposer would repeat itself for ever otherwise.
                journal.record("duplicate", f"{plan.action} of {plan.parent or 'a new draft'}: proposal repeats "
                               f"{twin.id}, rejected; no more {plan.action} from this parent", plan.stage)
                self._exhaust(plan.parent, plan.action)
                return None
        seq = len(journal.nodes)
        node = journal.add(Node(
            id=f"n{seq:04d}", seq=seq, stage=plan.stage, action=plan.action, parent=plan.parent,
            config=proposal.config, reason=f"{plan.reason}; {proposal.summary}"))
        if plan.parent is not None:
            self._forget_debuggable(plan.parent)
        record = journal.stage(plan.stage)
        if plan.action == "seed" and plan.parent == record.best:
            record.seed_nodes.append(node.id)
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

    def fail(self, reason: str) -> None:
        """End the run as failed for a reason no node can fix (a configuration error): nothing new starts,
        nodes not yet running never will, nodes running still finish and are recorded."""
        if self.journal.phase != "searching":
            return
        self._stop_reason = reason
        for node in list(self.journal.nodes.values()):
            if node.status == "pending":
                node.outcome = Outcome(buggy=False, reason=f"not run: {reason}")
                self.journal.set_status(node, "failed")
        self._finish("failed", reason)

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
        if record.status == "searching" and record.goal_met is None and not record.contenders:
            record.goal_met = reason
            self.journal.record("goal-met", f"stage {stage}: goal judged met ({reason})", stage)
            self._advance()

    def start(self, node_id: str) -> Node:
        node = self.journal.nodes[node_id]
        node.attempts += 1
        self.journal.set_status(node, "running")
        return node

    def complete(self, node_id: str, outcome: Outcome) -> Node:
        """Fold a finished node's outcome into the tree and advance stages."""
        node = self.journal.nodes[node_id]
        if outcome.details.configuration_error:
            node.outcome = outcome
            self.journal.set_status(node, "failed")
            self.fail(outcome.reason or "configuration error")
            return node
        if outcome.infrastructure:
            if node.attempts < MAX_ATTEMPTS:
                self.journal.set_status(node, "pending")
                self.journal.record("retry", f"{node.id}: infrastructure failure ({outcome.reason}); "
                                    f"attempt {node.attempts} of {MAX_ATTEMPTS}", node.stage)
                return node
            node.outcome = outcome
            self.journal.set_status(node, "failed")
        elif outcome.buggy:
            node.outcome = outcome
            self.journal.set_status(node, "buggy")
        else:
            try:
                outcome.metric = objective_value(self.spec.objective, outcome.metrics)
                status: NodeStatus = "succeeded"
            except ObjectiveMissing as exc:
                outcome.buggy, outcome.reason = True, f"objective not reported: {exc}"
                status = "buggy"
            node.outcome = outcome
            self.journal.set_status(node, status)
        self._index(node)
        self._advance()
        return node

    # -- stages --------------------------------------------------------------------------------------

    def _begin_stage(self, record: StageRecord, root: str | None) -> None:
        record.status, record.root = "searching", root
        goal = self.spec.stage(record.name).goal
        self.journal.record("stage-started", f"stage {record.name} starts" +
                            (f" from {root}" if root else "") + (f"; goal: {goal}" if goal else ""), record.name)
        if root is not None:
            self._rank_root(record)

    def _advance(self) -> None:
        stage = self.current_stage()
        if stage is not None and stage.contenders:
            self._decide(stage)
        elif stage is not None:
            budget = self.spec.stage(stage.name).max_nodes
            idle = self._idle(stage.name)
            if stage.name == "initial" and self._good.get("initial"):
                first = min(self._good["initial"], key=lambda k: k[1])
                self._end_stage(stage, f"goal met: {first[2]} is a working implementation")
            elif self._stop_reason and idle:
                self._end_stage(stage, f"stopped: {self._stop_reason}")
            elif stage.goal_met and idle:
                self._end_stage(stage, f"goal met: {stage.goal_met}")
            elif self._created(stage.name) >= budget and idle:
                self._end_stage(stage, f"node budget of {budget} used")
        self._maybe_finish()

    def _end_stage(self, record: StageRecord, reason: str) -> None:
        journal = self.journal
        if self._stop_reason and record.name != "initial" and not journal.count_in_stage(record.name):
            record.status, record.end_reason = "skipped", reason
            self._skip_waiting(f"not started: {self._stop_reason}")
            return
        candidates = self.candidates(record)
        if not candidates:
            record.status, record.end_reason = "failed", reason
            self._skip_waiting(f"not started: stage {record.name} failed")
            journal.record("stage-ended", f"stage {record.name} failed: no working implementation ({reason})",
                           record.name)
            self._finish("failed", f"stage {record.name} produced no working implementation: {reason}")
            return
        if self.judged and len(candidates) > 1:
            record.status, record.end_reason = "judging", reason
            journal.record("stage-judging", f"stage {record.name}: search ends ({reason}); the judge picks the "
                           "best node", record.name)
            return
        leaders = self._leaders(record)
        if record.name != "initial" and len(leaders) > 1 and self.spec.seeds > 0 and not self._stop_reason:
            record.contenders, record.end_reason = [n.id for n in leaders], reason
            journal.record("stage-deciding", f"stage {record.name}: search ends ({reason}); the best of "
                           f"{', '.join(record.contenders)} by seed mean over {self.spec.seeds + 1} runs each "
                           "becomes the stage's best", record.name)
            self._decide(record)
            return
        self._conclude_stage(record, self._best_by_metric(record), reason)

    def _leaders(self, record: StageRecord) -> list[Node]:
        """The stage's top ``seedCandidates`` nodes by their own run (its root among them)."""
        return self._ranked(record, max(1, self.spec.search.seed_candidates))

    def _ranked(self, record: StageRecord, top: int) -> list[Node]:
        """The stage's ``top`` best good search nodes and its root, best first."""
        keys = self._good.get(record.name, [])[:top]
        root = self.journal.nodes.get(record.root) if record.root else None
        if root is not None and root.good:
            keys = sorted([*keys, self._key(root)])
        return [self.journal.nodes[i] for _, _, i in keys[:top]]

    def _key(self, node: Node) -> tuple[float, int, str]:
        return sort_key(node.metric or 0.0, self.spec.objective.direction), node.seq, node.id

    def _decide(self, record: StageRecord) -> None:
        """Conclude a stage whose contenders' seed runs have all finished: best seed mean wins."""
        waiting = [c for c in record.contenders if self._seeds_missing(c, finished=True)]
        if waiting and not self._stop_reason:
            return
        direction = self.spec.objective.direction
        scored = []
        for node_id in record.contenders:
            stats = seed_stats(self._seed_values(node_id))
            scored.append((sort_key(stats.mean, direction), self.journal.nodes[node_id].seq, node_id, stats))
        scored.sort()
        shown = "; ".join(f"{i} {s.mean:.6g} ± {s.stderr:.2g} (n={s.n})" for _, _, i, s in scored)
        metric = self.spec.objective.metric
        note = f"best by seed mean of {metric}: {shown}"
        if waiting:
            note += f" (seed runs of {', '.join(waiting)} cut short: {self._stop_reason})"
        self._conclude_stage(record, self.journal.nodes[scored[0][2]], f"{record.end_reason}; {note}")

    def _result_of(self, node: Node) -> str:
        """A node's metric as reported: its seed mean ± s.e. over its good runs, never one lucky seed."""
        values = self._seed_values(node.id)
        stats = seed_stats(values) if values else None
        return f"{self.spec.objective.metric} {fmt_stats(stats, node.metric)}"

    def _seed_values(self, node_id: str) -> list[float]:
        node = self.journal.nodes[node_id]
        runs = [node, *self.journal.seed_runs(node_id)]
        return [n.metric for n in runs if n.good and n.metric is not None]

    def _seeds_missing(self, node_id: str, *, finished: bool = False) -> int:
        """How many of its ``seeds`` re-evaluations a node lacks: not yet planned (or, with ``finished``,
        not yet finished)."""
        runs = self.journal.seed_runs(node_id)
        have = sum(1 for n in runs if n.outcome is not None) if finished else \
            len(runs) + sum(1 for p in self._reserved if p.action == "seed" and p.parent == node_id)
        return max(0, self.spec.seeds - have)

    def _best_by_metric(self, record: StageRecord) -> Node:
        ranked = self._ranked(record, 1)
        assert ranked, "a stage without candidates has no best"
        return ranked[0]

    def _conclude_stage(self, record: StageRecord, best: Node, reason: str) -> None:
        journal = self.journal
        record.status, record.best, record.end_reason = "done", best.id, reason
        if best.id != record.root:
            record.seed_nodes = [n.id for n in journal.seed_runs(best.id)]
        kept = " (no node of this stage beat its root)" if best.id == record.root else ""
        journal.record("stage-ended", f"stage {record.name} ends ({reason}); best {best.id} "
                       f"{self._result_of(best)}{kept}", record.name)
        following = [s for s in journal.stages if s.status in ("waiting", "searching")]
        if following and following[0].status == "searching":
            self._confirm_root(following[0], best)  # it started early: it goes on even after a stop
        elif self._stop_reason:
            self._skip_waiting(f"not started: {self._stop_reason}")
        elif following and self._gated(record.name):
            journal.record("gate-waiting", f"stage {following[0].name} waits for approval of stage {record.name} "
                           f"(spec.gates); best {best.id} {self.spec.objective.metric}={best.metric:.6g}",
                           record.name)
        elif following:
            self._begin_stage(following[0], root=best.id)

    def _gated(self, stage: StageName) -> bool:
        return stage in self.spec.gates and stage not in self.spec.approved_gates

    def _open_gates(self) -> None:
        """Start the stage after each approved gate (the approval may have come while no process ran)."""
        for record in gate_waiting(self.journal):
            if self._gated(record.name) or self._stop_reason or self.journal.phase != "searching":
                continue
            following = self.journal.stages[self.journal.stages.index(record) + 1]
            self.journal.record("gate-approved", f"stage {record.name} approved (spec.approvedGates); stage "
                                f"{following.name} starts", record.name)
            self._begin_stage(following, root=record.best)

    def _confirm_root(self, record: StageRecord, best: Node) -> None:
        """A stage that started early from a provisional best: keep its root, or re-root it on the best."""
        if record.root == best.id:
            self.journal.record("root-confirmed", f"stage {record.name}: its provisional root {best.id} is the "
                                "previous stage's best", record.name)
            self._advance()
            return
        assert record.root is not None
        old = self.journal.nodes[record.root]
        ranked = self._frontier.get(record.name, [])
        index = bisect.bisect_left(ranked, self._key(old))
        if index < len(ranked) and ranked[index] == self._key(old):
            del ranked[index]
        record.root = best.id
        self._rank_root(record)
        early = sum(1 for n in self.journal.children(old.id) if n.stage == record.name)
        self.journal.record("re-rooted", f"stage {record.name} is re-rooted on {best.id}, the previous stage's "
                            f"best; it had started early from the provisional best {old.id}, and its {early} "
                            f"node(s) from {old.id} stay in the stage", record.name)
        self._advance()

    def _skip_waiting(self, reason: str) -> None:
        for record in self.journal.stages:
            if record.status == "waiting":
                record.status, record.end_reason = "skipped", reason

    def _maybe_finish(self) -> None:
        if self.journal.phase != "searching" or self.journal.any_unfinished() or self._reserved:
            return
        if any(s.status in ("waiting", "searching", "judging") for s in self.journal.stages):
            return
        if self._seed_plan(peek=True) is not None:
            return
        best = self.best()
        assert best is not None
        self._finish("succeeded", f"search complete; best node {best.id} ({self._result_of(best)})")

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

    # -- indexes -------------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Derive the engine's indexes from the journal (and the spec: direction, debug depth)."""
        self._good: dict[str, list[tuple[float, int, str]]] = {}
        self._frontier: dict[str, list[tuple[float, int, str]]] = {}
        self._debuggable: dict[str, list[tuple[int, str]]] = {}
        for node in self.journal.nodes.values():
            self._index(node)
        for record in self.journal.stages:
            if record.root is not None and record.status == "searching":
                self._rank_root(record)

    def _rank_root(self, record: StageRecord) -> None:
        """A stage expands its root like its own nodes, best first."""
        assert record.root is not None
        if not self._exhausted(record.root, _EXPANSION.get(record.name, "")):
            self._rank(self._frontier.setdefault(record.name, []), self.journal.nodes[record.root])

    def _index(self, node: Node) -> None:
        """File a finished search node: a good one among its stage's ranked nodes, a buggy leaf as
        debuggable."""
        if node.action == "seed":
            return
        if node.good:
            self._rank(self._good.setdefault(node.stage, []), node)
            if not self._exhausted(node.id, _EXPANSION.get(node.stage, "")):
                self._rank(self._frontier.setdefault(node.stage, []), node)
        elif (node.status == "buggy" and not self.journal.has_children(node.id)
              and not self._exhausted(node.id, "debug")
              and self.journal.debug_depth(node) < self.spec.search.max_debug_depth):
            bisect.insort(self._debuggable.setdefault(node.stage, []), (node.seq, node.id))

    def _rank(self, ranked: list[tuple[float, int, str]], node: Node) -> None:
        key = self._key(node)
        index = bisect.bisect_left(ranked, key)
        if index == len(ranked) or ranked[index] != key:
            ranked.insert(index, key)

    def _exhaust(self, parent: str | None, action: str) -> None:
        self.journal.exhaust(parent, action)
        if parent is None:
            return
        node = self.journal.nodes[parent]
        if action == "debug":
            self._forget_debuggable(parent)
        for stage, expansion in _EXPANSION.items():
            ranked = self._frontier.get(stage)
            if action == expansion and ranked:
                key = self._key(node)
                index = bisect.bisect_left(ranked, key)
                if index < len(ranked) and ranked[index] == key:
                    del ranked[index]

    def _forget_debuggable(self, node_id: str) -> None:
        node = self.journal.nodes[node_id]
        leaves = self._debuggable.get(node.stage)
        if leaves:
            index = bisect.bisect_left(leaves, (node.seq, node.id))
            if index < len(leaves) and leaves[index] == (node.seq, node.id):
                del leaves[index]

    # -- selection -----------------------------------------------------------------------------------

    def _created(self, stage: StageName) -> int:
        reserved = sum(1 for p in self._reserved if p.stage == stage and p.action != "seed")
        return self.journal.count_in_stage(stage) + reserved

    def _idle(self, stage: StageName) -> bool:
        """Whether no search node of the stage is unfinished or planned."""
        return (not self.journal.unfinished_in_stage(stage)
                and not any(p.stage == stage and p.action != "seed" for p in self._reserved))

    def _rng_seed(self) -> str:
        return f"{self.spec.seed}:{len(self.journal.nodes)}:{len(self._reserved)}:{len(self.journal.exhausted)}"

    def _exhausted(self, parent: str | None, action: str) -> bool:
        return self.journal.is_exhausted(parent, action)

    def _seed_config(self, node: Node, done: int) -> NodeConfig:
        return NodeConfig(seed=self.spec.seed + 1 + done, params=dict(node.config.params),
                          variant=node.config.variant, ablation=node.config.ablation, code=node.config.code)

    def _seed_plan(self, peek: bool = False) -> Plan | None:
        """Seed re-evaluations that are due: a concluded stage's best, a deciding stage's contenders."""
        if self.spec.seeds <= 0 or self._stop_reason:
            return None
        for record in self.journal.stages:
            if record.contenders and record.status == "searching":
                for rank, node_id in enumerate(record.contenders):
                    if node_id == record.root or not self._seeds_missing(node_id):
                        continue
                    if peek:
                        return Plan(record.name, "seed", node_id, "", "")
                    return self._seed_of(record, self.journal.nodes[node_id],
                                         f"contender {rank + 1} of {len(record.contenders)} for stage "
                                         f"{record.name}'s best")
            if record.best is None or record.best == record.root or not self._seeds_missing(record.best):
                continue
            if peek:
                return Plan(record.name, "seed", record.best, "", "")
            return self._seed_of(record, self.journal.nodes[record.best], f"stage {record.name}'s best")
        return None

    def _seed_of(self, record: StageRecord, node: Node, what: str) -> Plan:
        done = self.spec.seeds - self._seeds_missing(node.id)
        config = self._seed_config(node, done)
        return Plan(record.name, "seed", node.id, f"re-evaluate {what} {node.id} with seed {config.seed} "
                    f"({done + 1} of {self.spec.seeds})", self._rng_seed(), config)

    def _idle_slot_plan(self) -> Plan | None:
        """A slot that would idle while the stage's last search nodes run re-evaluates a leading candidate."""
        stage = self.current_stage()
        if (stage is None or stage.name == "initial" or stage.contenders or self.spec.seeds <= 0
                or self._stop_reason or self._idle(stage.name)):
            return None
        leaders = [n for n in self._leaders(stage) if n.id != stage.root]
        for rank, node in enumerate(leaders):
            if self._seeds_missing(node.id):
                return self._seed_of(stage, node, f"a slot would idle while stage {stage.name}'s last search "
                                     f"nodes run: provisional leader {rank + 1} of {len(leaders)},")
        return None

    def _early_plan(self) -> Plan | None:
        """A slot that would idle while a stage ends starts the next stage from the provisional best.

        The rules: the stage is past its first (whose end is its first working node), nothing stops the run,
        the stage's leaders' seed runs are all planned, and there is a next stage.
        """
        stage = self.current_stage()
        if stage is None or stage.name == "initial" or self._stop_reason or self.spec.suspend:
            return None
        if self._gated(stage.name):
            return None  # nothing of the next stage may start before the gate is approved
        if not stage.contenders and self._idle(stage.name):
            return None
        following = next((s for s in self.journal.stages[self.journal.stages.index(stage) + 1:]
                          if s.status in ("waiting", "searching")), None)
        if following is None:
            return None
        if following.status == "waiting":
            leader = self._provisional_best(stage)
            if leader is None:
                return None
            following.provisional_root = leader.id
            why = "the seed runs of its contenders" if stage.contenders else "its last search nodes"
            self.journal.record("stage-started-early", f"stage {following.name} starts early from {leader.id}, "
                                f"the provisional best of stage {stage.name} ({self._result_of(leader)}), "
                                f"while {why} run: slots would idle otherwise; should "
                                f"another node become the best, the stage is re-rooted on it", following.name)
            self._begin_stage(following, root=leader.id)
        return self._search_plan(following)

    def _provisional_best(self, stage: StageRecord) -> Node | None:
        """The stage's best as far as is known: the best seed mean among its contenders, else its top node."""
        if not stage.contenders:
            ranked = self._ranked(stage, 1)
            return ranked[0] if ranked else None
        direction = self.spec.objective.direction
        scored = [(sort_key(seed_stats(self._seed_values(i)).mean, direction), self.journal.nodes[i].seq, i)
                  for i in stage.contenders]
        return self.journal.nodes[min(scored)[2]]

    def _debug_plan(self, stage: StageName, rng: random.Random, why: str) -> Plan | None:
        planned = {p.parent for p in self._reserved}
        leaves = [self.journal.nodes[i] for _, i in self._debuggable.get(stage, ()) if i not in planned]
        if not leaves:
            return None
        leaf = rng.choice(leaves)
        error = (leaf.outcome.reason if leaf.outcome else None) or "unknown error"
        depth = self.journal.debug_depth(leaf)
        return Plan(stage, "debug", leaf.id, f"debug {leaf.id} ({why}; buggy: {error[:200]}; debug depth "
                    f"{depth} < {self.spec.search.max_debug_depth})", self._rng_seed())

    def _search_plan(self, stage: StageRecord | None) -> Plan | None:
        if (stage is None or stage.goal_met or stage.contenders
                or self._created(stage.name) >= self.spec.stage(stage.name).max_nodes):
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
        ranked = self._frontier.get(name)
        if not ranked:
            return None
        parent = self.journal.nodes[ranked[0][2]]
        action: Action = "tune" if name == "tuning" else "improve"
        assert parent.metric is not None
        better = self._good_before(name, ranked[0]) + (1 if self._root_before(stage, ranked[0]) else 0)
        note = "best-first: the stage's best node" if better == 0 else f"best-first: rank {better + 1} " \
            "(better nodes are exhausted)"
        return Plan(name, action, parent.id, f"{note} {parent.id} "
                    f"({self.spec.objective.metric}={parent.metric:.6g})", self._rng_seed())

    def _good_before(self, stage: StageName, key: tuple[float, int, str]) -> int:
        """How many good search nodes of the stage rank before ``key``."""
        return bisect.bisect_left(self._good.get(stage, []), key)

    def _root_before(self, stage: StageRecord, key: tuple[float, int, str]) -> bool:
        root = self.journal.nodes[stage.root] if stage.root else None
        if root is None or root.id == key[2]:
            return False
        return self._key(root) < key


_EXPANSION: dict[str, str] = {"tuning": "tune", "research": "improve"}
"""The action that expands a stage's ranked nodes, best first."""


def gate_waiting(journal: Journal) -> list[StageRecord]:
    """Stages that have ended while the next one has not started (only a gate holds a run there)."""
    stages = journal.stages
    return [s for s, after in zip(stages, stages[1:]) if s.status == "done" and s.best and after.status == "waiting"]
