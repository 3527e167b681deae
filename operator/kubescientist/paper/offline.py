"""The paper written without a language model: every section assembled from the run's records.

Sentences are templates over the analysis; every number goes through ``fmt`` from a registered fact, so
the number checker passes them by construction. The text claims nothing the records do not show: a
difference within the seeds' standard error is called that, not an improvement, and without literature
results the related work says that no search was run.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from kubescientist.core.journal import Node
from kubescientist.core.objective import SeedStats
from kubescientist.core.stats import Comparison as Test, compare as welch
from kubescientist.paper.analysis import ONSET, Comparison, RunAnalysis, StageResult
from kubescientist.paper.citations import Reference
from kubescientist.paper.figures import Figure
from kubescientist.paper.fmt import count, decimals_for, escape, fixed, label, mean_pm, number, param
from kubescientist.paper.sections import SectionName
from kubescientist.paper.tables import Table

STAGE_DESCRIPTIONS = {
    "initial": "drafts implementations until one runs and reports the objective",
    "tuning": "changes one hyperparameter of the best node at a time",
    "research": "applies each variant of the research agenda to the tuned node, then improves the best of them",
    "ablation": "switches one component of the research result off at a time",
}


def drafts(analysis: RunAnalysis, figures: Sequence[Figure], tables: Sequence[Table],
           references: Sequence[Reference]) -> dict[SectionName, str]:
    """Every section's offline text (LaTeX bodies, no headings)."""
    w = _Writer(analysis, {f.name for f in figures}, {t.name for t in tables}, references)
    return {"abstract": w.abstract(), "introduction": w.introduction(), "related_work": w.related_work(),
            "method": w.method(), "setup": w.setup(), "results": w.results(), "ablations": w.ablations(),
            "limitations": w.limitations(), "conclusion": w.conclusion()}


def digest(analysis: RunAnalysis) -> str:
    """The run's records as plain text, for a writer model's context."""
    records = analysis.records
    lines = [f"Run: {records.name}", f"Idea title: {records.idea.title}",
             f"Hypothesis: {records.idea.hypothesis}", f"Description: {records.idea.description}",
             f"Objective: {analysis.objective.direction} {analysis.objective.value} {analysis.metric} "
             f"({analysis.objective.aggregation} over datasets {', '.join(analysis.datasets) or 'all'})"]
    if records.template.description:
        lines.append(f"Program: {records.template.description}")
    for stage in analysis.stages:
        best = stage.best.id if stage.best else "none"
        stats = f"{stage.objective.mean:.6g} +- {stage.objective.stderr:.3g} (n={stage.objective.n})" \
            if stage.objective else "no result"
        lines.append(f"Stage {stage.index} {stage.name} [{stage.status}; {stage.end_reason}]: best {best}, "
                     f"{analysis.metric} {stats}; nodes {dict(stage.counts)}")
        for trial in stage.trials:
            value = f"{trial.value:.6g}" if trial.value is not None else trial.node.status
            reason = f" ({trial.node.outcome.reason})" if trial.node.outcome and trial.node.outcome.reason else ""
            lines.append(f"  {trial.node.id} {trial.node.action}: {trial.what} -> {value}{reason}")
    for kind, rows in (("Variant", analysis.variants), ("Ablation", analysis.ablations)):
        for c in rows:
            lines.append(f"{kind} {c.name} ({c.description}) on {c.node.id}: value {c.value}, delta {c.delta}")
    lines.append(f"Nodes: {dict(analysis.counts)}")
    return "\n".join(lines)


def _sentence_start(text: str) -> str:
    """``text`` with its first word lower-cased when it is an ordinary capitalised word (not AdamW, not GPU)."""
    first = text.split(" ", 1)[0]
    if len(first) > 1 and first[0].isupper() and first[1:].islower():
        return text[0].lower() + text[1:]
    return text


def _pm(stats: SeedStats) -> str:
    return mean_pm(stats.mean, stats.stderr, stats.n)


def statement(text: str) -> str:
    """A user's sentence (a hypothesis, a title), escaped, set on its own: one terminal mark, never two."""
    text = " ".join(text.split()).rstrip(" .;:,")
    return escape(text) + ("" if text.endswith(("?", "!")) else ".")


def phrase(text: str) -> str:
    """A template's noun phrase (a variant's description), escaped, without a trailing full stop."""
    return escape(" ".join(text.split()).rstrip(" .;:,"))


def _words(text: str) -> set[str]:
    return {w for w in (t.lower().strip(".,;:?!()") for t in text.replace("_", " ").replace("-", " ").split())
            if len(w) > 2 and w not in {"the", "and", "without", "with", "removed", "off", "drive", "does"}}


def _node(node: Node | None) -> str:
    return r"\texttt{" + escape(node.id) + "}" if node is not None else "--"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _params(changes: Iterable[tuple[str, Any, Any]]) -> str:
    return _join([rf"\texttt{{{escape(k)}}} from {param(a)} to {param(b)}" for k, a, b in changes])


class _Writer:
    def __init__(self, analysis: RunAnalysis, figures: set[str], tables: set[str],
                 references: Sequence[Reference]) -> None:
        self.a = analysis
        self.figures = figures
        self.tables = tables
        self.references = references
        self.metric = escape(label(analysis.metric))

    # -- shared phrases ------------------------------------------------------------------------------

    def ref(self, kind: str, name: str) -> str:
        """``Figure~\\ref{fig:x}`` when the figure exists, else nothing (so no reference dangles)."""
        present = self.figures if kind == "fig" else self.tables
        if name not in present:
            return ""
        word = "Figure" if kind == "fig" else "Table"
        return rf"{word}~\ref{{{kind}:{name}}}"

    def refs(self, *pairs: tuple[str, str]) -> str:
        found = [r for r in (self.ref(k, n) for k, n in pairs) if r]
        return f" ({', '.join(found)})" if found else ""

    def result(self) -> StageResult | None:
        return self.a.best

    def initial(self) -> StageResult | None:
        stage = self.a.stage("initial")
        return stage if stage.objective is not None else None

    def test(self, later: SeedStats, earlier: SeedStats) -> Test:
        """Welch's t-test of two seed means (its numbers are facts: ``analysis._register_tests``)."""
        return welch(later, earlier, self.a.objective.direction)

    def compare(self, later: SeedStats, earlier: SeedStats) -> str:
        """How two seed means relate, by Welch's t-test (two-sided, 5%), with the interval of the difference."""
        result = self.test(later, earlier)
        if result.verdict == "single run":
            return "a comparison of single runs, which cannot separate an effect from seed noise"
        if result.verdict == "identical":
            return "identical: every seed gave the same value, so the program ignores its seed"
        assert result.interval is not None
        places = decimals_for(max(later.stderr, earlier.stderr)) or None
        interval = rf"95\% interval of the difference [{fixed(result.interval[0], places)}, " \
                   rf"{fixed(result.interval[1], places)}] by Welch's t-test"
        if result.verdict == "within noise":
            return rf"within noise ({interval} includes zero)"
        word = "an improvement" if result.verdict == "better" else "a deterioration"
        return rf"{word} beyond seed noise ({interval} excludes zero)"

    def delta(self, delta: float, *spreads: float) -> str:
        """A signed difference at the precision of the larger standard error beside it."""
        spread = max(spreads, default=0.0)
        if spread <= 0:
            return fixed(delta, None, sign=True)
        places = decimals_for(spread)
        # A difference far below the noise would round to a signed zero: show its first digit instead.
        while delta and round(delta, places) == 0 and places < decimals_for(spread) + 3:
            places += 1
        return fixed(delta, places, sign=True)

    def largest_ablation(self) -> Comparison | None:
        rows = [c for c in self.a.ablations if c.delta is not None]
        return max(rows, key=lambda c: abs(c.delta or 0.0)) if rows else None

    # -- sections ------------------------------------------------------------------------------------

    def stages_run(self) -> list[str]:
        words = {"initial": "a first working implementation", "tuning": "hyperparameter tuning",
                 "research": "the variants of a research agenda", "ablation": "ablations"}
        return [words[s.name] for s in self.a.stages if s.trials]

    def question(self) -> str:
        """The run's question or hypothesis as its own labelled sentence (never spliced into ours)."""
        idea = self.a.records.idea
        if idea.title.strip().endswith("?"):
            return r"\emph{Question.} " + statement(idea.title)
        if idea.hypothesis.strip():
            return r"\emph{Hypothesis.} " + statement(idea.hypothesis)
        return ""

    def answer(self) -> str:
        """What the results say about the question, from the ablation the question names if there is one."""
        a, result = self.a, self.result()
        if result is None or result.objective is None:
            return "The search produced no working result, so this run cannot answer the question."
        idea = a.records.idea
        asked = _words(f"{idea.title} {idea.hypothesis}")
        named = [c for c in a.ablations if c.value is not None and c.delta is not None
                 and _words(c.name.removeprefix("no_")) & asked]
        reference = a.ablation_reference_stats
        if named and reference is not None:
            c = max(named, key=lambda c: abs(c.delta or 0.0))
            assert c.delta is not None and c.value is not None
            spread = 2 * reference.stderr if reference.n > 1 else 0.0
            change = (rf"switching off \texttt{{{escape(c.name)}}} changes {self.metric} from {_pm(reference)} to "
                      rf"{fixed(c.value, decimals_for(reference.stderr) if reference.n > 1 else None)} in one run")
            yes, unsure, no = (("support the hypothesis", "do not support the hypothesis", "contradict the hypothesis")
                               if idea.hypothesis.strip() else ("answer yes", "do not answer yes", "answer no"))
            if reference.n > 1 and abs(c.delta) <= spread:
                return rf"The results {unsure} for this program: {change}, within twice the seed standard error."
            if a.improves(-c.delta):
                return (rf"The results {yes} for this program: {change}, beyond twice the seed standard error"
                        if reference.n > 1 else rf"The results {yes}, on a single reference run, for this program: "
                        rf"{change}") + "."
            return rf"The results {no} for this program: {change}; the program does better without it."
        initial = self.initial()
        if initial is not None and initial.objective is not None and initial is not result:
            return (rf"No ablation switched off what the question names, so the run answers it only indirectly: "
                    rf"the best configuration reaches {_pm(result.objective)} against {_pm(initial.objective)} "
                    rf"for the first working implementation, {self.compare(result.objective, initial.objective)}.")
        return "No ablation switched off what the question names, so the run does not answer it directly."

    def abstract(self) -> str:
        a = self.a
        parts = [self.question()] if self.question() else []
        stages = self.stages_run()
        parts.append(rf"An automated search ran {count(a.counts['total'], 'experiment')} in "
                     rf"{count(len(stages), 'stage')}: {_join(stages)}; each stage's best configuration was re-run "
                     r"with further seeds.")
        result, initial = self.result(), self.initial()
        if result is None:
            parts.append(r"The search produced no working result; this paper reports what was tried and how it "
                         r"failed.")
        if result is not None and result.objective is not None and result.best is not None:
            text = (rf"The best configuration, from the {result.name} stage, reaches a {self.metric} of "
                    rf"{_pm(result.objective)} (mean $\pm$ standard error over {result.objective.n} seeds)")
            if initial is not None and initial.objective is not None and initial is not result:
                text += (rf" against {_pm(initial.objective)} for the first working implementation: "
                         rf"{self.compare(result.objective, initial.objective)}")
            parts.append(text + ".")
            rivals = [s for s in a.stages if s is not result and s.name not in ("initial", "ablation")
                      and s.objective is not None and not s.kept_root
                      and self.test(s.objective, result.objective).verdict == "within noise"]
            if rivals:
                parts.append(rf"The best of the {_join([s.name for s in rivals])} stage "
                             rf"({_join([_pm(s.objective) for s in rivals if s.objective])}) is within noise of "
                             r"it, so the stage that found it matters little.")
        parts.append(self.answer())
        parts.append(r"Every number in this paper is taken from the run's records and checked automatically.")
        return " ".join(parts)

    def introduction(self) -> str:
        idea, a = self.a.records.idea, self.a
        out = []
        if idea.title.strip().endswith("?"):
            out.append(r"\paragraph{Question.} " + statement(idea.title))
        if idea.hypothesis.strip():
            out.append(r"\paragraph{Hypothesis.} " + statement(idea.hypothesis))
        out.append(r"\paragraph{Answer.} " + self.answer())
        out.append(
            r"We put this to an automated, reproducible test. A best-first tree search over experiments, "
            r"driven by a fixed run seed, proposes configurations of a single experiment program, runs each in a "
            r"sandbox, and folds the measured metrics back into the search. Each stage's best configuration is "
            rf"re-run with further seeds so that the result is reported with an error bar{self.refs(('fig', 'stages'))}.")
        items = []
        result = self.result()
        if result is not None and result.objective is not None:
            items.append(rf"A configuration reaching a {self.metric} of {_pm(result.objective)} over "
                         rf"{result.objective.n} seeds{self.refs(('tab', 'stages'), ('tab', 'best'))}.")
        if a.variants:
            items.append(rf"A comparison of {count(len(a.variants), 'variant')} of the research agenda against the "
                         rf"tuned configuration's seed mean{self.refs(('tab', 'variants'))}.")
        if a.ablations:
            items.append(rf"{count(len(a.ablations), 'ablation').capitalize()}, each switching one component off"
                         rf"{self.refs(('tab', 'ablations'))}.")
        items.append(r"The complete record of the search: every configuration, its outcome and the reason it "
                     r"was created, with every number in this paper traced to it.")
        out.append(r"Our contributions are:" + "\n" + r"\begin{itemize}" + "\n"
                   + "\n".join(r"\item " + i for i in items) + "\n" + r"\end{itemize}")
        return "\n\n".join(out)

    def related_work(self) -> str:
        if not self.references:
            return (r"No literature search was run for this paper: it was written offline, without access to a "
                    r"bibliographic database or a language model. We therefore do not position the results "
                    r"against prior work and cite nothing, rather than cite works that were not retrieved and "
                    r"checked. The framing in the introduction is the idea as it was stated for the run, not a "
                    r"survey of the field.")
        items = []
        for ref in self.references:
            venue = f", {escape(ref.venue)}" if ref.venue else ""
            items.append(rf"\item \citet{{{ref.key}}}: \emph{{{phrase(ref.title)}}}{venue}.")
        return (rf"The run's literature holds the {count(len(self.references), 'work')} below. "
                r"This paper was written without a language model, so it lists them as retrieved and does not "
                r"claim how each relates to the results." + "\n" + r"\begin{itemize}" + "\n" + "\n".join(items)
                + "\n" + r"\end{itemize}")

    def method(self) -> str:
        a, template, spec = self.a, self.a.records.template, self.a.records.spec
        out = []
        if template.description:
            out.append(r"\paragraph{The experiment program.} " + statement(template.description))
        objective = a.objective
        datasets = _join([escape(label(d)) for d in (objective.datasets or a.datasets)])
        verb = "maximised" if objective.direction == "maximize" else "minimised"
        fold = {"mean": "averaged", "min": "the minimum taken", "max": "the maximum taken"}[objective.aggregation]
        out.append(
            rf"\paragraph{{Objective.}} The search {verb} the {escape(objective.value)} value of {self.metric}, "
            rf"{fold} over the datasets" + (f" ({datasets})." if datasets else " the program reports."))
        stages = "\n".join(
            rf"\item \textbf{{{escape(s.name.capitalize())}}} {STAGE_DESCRIPTIONS[s.name]}"
            + (rf". Goal: \emph{{{statement(s.goal)}}}" if s.goal else ".")
            for s in a.stages)
        out.append(
            r"\paragraph{Search.} The search is a best-first tree search in which every node is one run of the "
            r"program with one configuration. A free slot first re-runs a finished stage's best node with further "
            rf"seeds; otherwise, with probability {number(spec.search.debug_probability)}, it retries a failed "
            rf"leaf (at most {spec.search.max_debug_depth} consecutive retries), and else it expands the best "
            r"working node. Each stage starts from the previous stage's best node:" + "\n"
            + r"\begin{enumerate}" + "\n" + stages + "\n" + r"\end{enumerate}" + "\n"
            + r"A stage ends when its node budget is spent or nothing new is left to try; its best node is then "
            rf"re-run with {spec.seeds} further seeds and reported as the mean $\pm$ standard error over all its "
            r"runs. Every choice derives from the run seed, so the search is reproducible.")
        if template.variants:
            items = "\n".join(rf"\item \texttt{{{escape(v.name)}}}: {statement(v.description)}"
                              for v in template.variants)
            out.append(r"\paragraph{Research agenda.} The variants tried in the research stage:" + "\n"
                       + r"\begin{itemize}" + "\n" + items + "\n" + r"\end{itemize}")
        if template.ablations:
            items = "\n".join(rf"\item \texttt{{{escape(v.name)}}}: {statement(v.description)}"
                              for v in template.ablations)
            out.append(r"\paragraph{Ablations.} The components switched off in the ablation stage:" + "\n"
                       + r"\begin{itemize}" + "\n" + items + "\n" + r"\end{itemize}")
        return "\n\n".join(out)

    def setup(self) -> str:
        a, spec, records = self.a, self.a.records.spec, self.a.records
        out = []
        metrics = sorted({m for s in a.stages for ms in s.metrics.values() for m in ms})
        if a.datasets:
            out.append(
                rf"\paragraph{{Data and metrics.}} The program reports {count(len(a.datasets), 'dataset')} "
                rf"({_join([escape(label(d)) for d in a.datasets])}) "
                rf"and on each the metrics {_join([escape(label(m)) for m in metrics])}, with a final and a best "
                r"value and, where logged, a curve over training steps.")
        budgets = _join([rf"{s.max_nodes} ({escape(s.name)})" for s in spec.stages])
        out.append(
            rf"\paragraph{{Budget.}} The stages had node budgets of {budgets}, seed re-runs not counted. Up to "
            rf"{count(spec.search.parallelism, 'node')} ran at once, each in its own sandbox with a deadline of "
            rf"{spec.resources.deadline_seconds} seconds, "
            rf"{escape(str(spec.resources.cpu))} CPU, {escape(str(spec.resources.memory))} of memory and "
            rf"{'no GPU' if spec.resources.gpus == 0 else str(spec.resources.gpus) + ' GPUs'}.")
        out.append(
            rf"\paragraph{{Seeds.}} Each stage's best configuration was re-run with {spec.seeds} further seeds "
            rf"({spec.seeds + 1} runs); results are the mean $\pm$ standard error (sample standard deviation "
            r"over the square root of the number of runs). Every other node ran once, with the run seed.")
        counts = a.counts
        timings = records.summary.get("timings") or {}
        outcomes = [f"{counts['succeeded']} succeeded"]
        if counts["buggy"]:
            outcomes.append(f"{counts['buggy']} produced no usable result")
        if counts["failed"]:
            outcomes.append(f"{counts['failed']} failed for infrastructure reasons")
        text = rf"\paragraph{{Compute.}} The run created {counts['total']} nodes: {_join(outcomes)}"
        if isinstance(timings.get("wallSeconds"), (int, float)):
            text += rf", in {number(timings['wallSeconds'])} seconds of wall-clock time"
            if isinstance(timings.get("nodeSeconds"), (int, float)):
                text += rf" ({number(timings['nodeSeconds'])} seconds of program time)"
        out.append(text + ".")
        config = self.ref("tab", "config")
        if config:
            out.append(rf"{config} lists the search space and the configurations the search started from and "
                       r"ended with." + (r" Table~\ref{tab:nodes} in Appendix~\ref{sec:appendix} lists every node."
                                         if "nodes" in self.tables else ""))
        return "\n\n".join(out)

    def results(self) -> str:
        a = self.a
        out = []
        initial, result = self.initial(), self.result()
        lead = rf"{self.ref('tab', 'stages')} and {self.ref('fig', 'stages')} summarise the stages." \
            if self.ref("tab", "stages") and self.ref("fig", "stages") else ""
        story = [lead] if lead else []
        if initial is not None and initial.objective is not None and initial.best is not None:
            story.append(rf"The first working implementation, {_node(initial.best)}, reaches "
                         rf"{_pm(initial.objective)}.")
        else:
            first = a.stage("initial")
            story.append(rf"The initial stage produced no working implementation "
                         rf"({escape(first.end_reason or first.status)}), so the later stages did not run.")
        previous = initial
        for stage in a.stages:
            if stage.name in ("initial", "ablation"):
                continue
            story.append(self._stage_story(stage, previous))
            if stage.objective is not None and not stage.kept_root:
                previous = stage if previous is None or previous.objective is None or \
                    a.improves(stage.objective.mean - previous.objective.mean) else previous
        if result is not None and result.best is not None and result.objective is not None:
            story.append(rf"The run's result is therefore {_node(result.best)} from the {result.name} stage, "
                         rf"with {self.metric} {_pm(result.objective)}.")
        out.append(" ".join(s for s in story if s))
        if result is not None and self.ref("tab", "best"):
            per = []
            for dataset, metrics in result.metrics.items():
                s = metrics.get(a.metric)
                if s is not None:
                    per.append(rf"{_pm(s)} on {escape(label(dataset))}")
            if per:
                out.append(rf"{self.ref('tab', 'best')} gives every final metric of the result per dataset; "
                           rf"{self.metric} is {_join(per)}.")
        out.append(self._curves_story())
        out.append(self._search_story())
        out.append(self._variants_story())
        return "\n\n".join(p for p in out if p)

    def _stage_story(self, stage: StageResult, previous: StageResult | None) -> str:
        a = self.a
        name = escape(stage.name.capitalize())
        if stage.best is None or stage.objective is None:
            return rf"{name} produced no result ({escape(stage.end_reason or stage.status)})."
        tried = count(len(stage.trials), "node")
        if not stage.trials:
            return (rf"{name} ended without a new node ({escape(stage.end_reason)}) and keeps {_node(stage.root)}."
                    if stage.root is not None else rf"{name} tried nothing ({escape(stage.end_reason)}).")
        if stage.kept_root:
            return (rf"{name} tried {tried}, none of which beat its starting point {_node(stage.root)}; the "
                    r"stage keeps it.")
        what = ""
        if stage.best.config.variant and (stage.root is None or stage.best.config.variant != stage.root.config.variant):
            what = rf"the variant \texttt{{{escape(stage.best.config.variant)}}}"
        elif stage.changes:
            what = rf"changing {_params(stage.changes)}"
        text = (rf"{name} tried {tried}; its best, {_node(stage.best)}"
                + (rf" ({what})" if what else "") + rf", reaches {_pm(stage.objective)}")
        if previous is not None and previous.objective is not None:
            delta = stage.objective.mean - previous.objective.mean
            text += (rf", {self.delta(delta, stage.objective.stderr, previous.objective.stderr)} against the "
                     rf"{escape(previous.name)} stage's {_pm(previous.objective)}: "
                     rf"{self.compare(stage.objective, previous.objective)}")
            if not a.improves(delta):
                text += rf". The {escape(previous.name)} configuration remains the better one"
        return text + "."

    def _curves_story(self) -> str:
        figure = self.ref("fig", "curves")
        if not figure:
            return ""
        parts = []
        for stage in self.a.stages:
            if stage.name == "ablation" or not stage.onsets or stage.best is None:
                continue
            steps = _join([rf"{step} ({escape(label(d))})" for d, step in stage.onsets.items()])
            parts.append(rf"step {steps} for the {escape(stage.name)} stage's best")
        text = rf"{figure} shows {self.metric} during training."
        if parts:
            text += (rf" The mean curve first completes {number(100 * ONSET)}\% of its total change at "
                     rf"{_join(parts)}.")
        return text

    def _search_story(self) -> str:
        figure = self.ref("fig", "search")
        nodes = [n for n in self.a.records.journal.nodes.values() if n.action != "seed"]
        broken = [n for n in nodes if n.status in ("buggy", "failed")]
        text = rf"{figure} shows every node of the search." if figure else ""
        if broken:
            reasons = _join([rf"{_node(n)} ({escape(_short(n.outcome.reason if n.outcome else None))})"
                             for n in broken[:4]])
            text += (rf" {count(len(broken), 'node').capitalize()} produced no result: {reasons}; "
                     rf"{'it is' if len(broken) == 1 else 'they are'} kept in the record and excluded from every "
                     r"statistic.")
        return text.strip()

    def _variants_story(self) -> str:
        a, reference, stats = self.a, self.a.variant_reference, self.a.variant_reference_stats
        if not a.variants or reference is None or stats is None:
            return ""
        refs = self.refs(("tab", "variants"), ("fig", "variants"))
        rows = [rf"\texttt{{{escape(c.name)}}} {'fails to run' if c.delta is None else self.delta(c.delta, stats.stderr)}"
                for c in a.variants]
        text = (rf"Against the tuned configuration {_node(reference)} ({_pm(stats)}), the variants, one run each, "
                rf"change {self.metric} by {_join(rows)}{refs}.")
        research = a.stage("research")
        tuned = next((s for s in a.stages if s.best is not None and s.best.id == reference.id and not s.kept_root),
                     None)
        if research.objective is not None and research.best is not None and not research.kept_root \
                and tuned is not None and tuned.objective is not None:
            text += (rf" Re-run with {research.objective.n} seeds, the best variant "
                     rf"({_node(research.best)}) reaches {_pm(research.objective)} against {_pm(tuned.objective)}: "
                     rf"{self.compare(research.objective, tuned.objective)}.")
        return text

    def ablations(self) -> str:
        a, reference, stats = self.a, self.a.ablation_reference, self.a.ablation_reference_stats
        if not a.ablations or reference is None or stats is None:
            return (r"No ablation produced a result in this run, so the contribution of the program's components "
                    r"is not measured here.")
        refs = self.refs(("tab", "ablations"), ("fig", "ablations"))
        seeded = stats.n > 1
        out = [rf"The ablation stage switches one component at a time off the research stage's result, "
               rf"{_node(reference)}, which reaches {_pm(stats)}"
               + (rf" over {stats.n} seeds" if seeded else " in a single run") + rf"{refs}. Each ablation ran "
               r"once; its difference is taken from the reference's mean"
               + (r" and read against twice the reference's standard error." if seeded else ".")]
        places = decimals_for(stats.stderr) if seeded else None
        sentences = []
        for c in sorted(a.ablations, key=lambda c: -abs(c.delta or 0.0)):
            name = rf"\texttt{{{escape(c.name)}}}"
            if c.value is None or c.delta is None:
                sentences.append(rf"With {name} switched off the program produced no result.")
                continue
            text = (rf"With {name} switched off, {self.metric} is {fixed(c.value, places)} "
                    rf"({fixed(c.delta, places, sign=True)})")
            if seeded and abs(c.delta) <= 2 * stats.stderr:
                text += ": within noise, no measurable contribution"
            elif a.improves(-c.delta):
                text += ": the component contributes"
            else:
                text += ": the program does better without it"
            sentences.append(text + ".")
        out.append(" ".join(sentences))
        ablation = a.stage("ablation")
        if ablation.best is not None and not ablation.kept_root and ablation.objective is not None \
                and ablation.objective.n > 1 and seeded:
            out.append(
                rf"The best-scoring ablation, {_node(ablation.best)}, was re-run with further seeds: "
                rf"{_pm(ablation.objective)} over {ablation.objective.n} seeds against the reference's "
                rf"{_pm(stats)}, {self.compare(ablation.objective, stats)}.")
        return "\n\n".join(out)

    def limitations(self) -> str:
        a, spec = self.a, self.a.records.spec
        items = [
            rf"\textbf{{Few seeds.}} Only each stage's best configuration was run with {spec.seeds + 1} seeds; "
            r"every other node, including every variant and ablation, ran once. Differences among single runs "
            r"that are smaller than the seed standard errors reported in Table~\ref{tab:stages} should not be read "
            r"as effects." if self.ref("tab", "stages") else
            rf"\textbf{{Few seeds.}} Only each stage's best configuration was run with {spec.seeds + 1} seeds; "
            r"every other node ran once.",
            self._search_limitation(),
            rf"\textbf{{One program.}} All results come from one experiment program and "
            rf"{count(len(a.datasets), 'dataset')}; whether they transfer to other models or data is "
            r"not tested.",
        ]
        if any(s.objective is not None and s.objective.n > 1 and s.objective.stderr == 0 for s in a.stages):
            items.append(r"\textbf{The program ignores its seed.} Every seed of a re-run configuration gave the "
                         r"same value, so the seeds measure no noise and no difference here can be tested; the "
                         r"program must seed its random generators from the seed it is given.")
        broken = a.counts.get("buggy", 0) + a.counts.get("failed", 0)
        if broken:
            items.append(rf"\textbf{{Failed nodes.}} {count(broken, 'node').capitalize()} produced no result; "
                         rf"{'its configuration is' if broken == 1 else 'their configurations are'} reported but "
                         r"not measured.")
        unfinished = [s for s in a.stages if s.status in ("failed", "skipped")]
        if unfinished:
            items.append(r"\textbf{Incomplete stages.} " + _join(
                [rf"{escape(s.name)} ({escape(s.status)}: {escape(s.end_reason)})" for s in unfinished]) + ".")
        items.append(r"\textbf{Automatic writing.} This text was assembled from the run's records without a "
                     r"language model. It reports what was measured and does not interpret it beyond that; "
                     + (r"it lists prior work without relating the results to it." if self.references else
                        r"it relates nothing to prior work."))
        return r"\begin{itemize}" + "\n" + "\n".join(r"\item " + i for i in items) + "\n" + r"\end{itemize}"

    def _search_limitation(self) -> str:
        tuning = self.a.stage("tuning").trials if any(s.name == "tuning" for s in self.a.stages) else ()
        total = self.a.counts["total"]
        if tuning:
            return (rf"\textbf{{A small search.}} The search created {total} nodes; tuning tried "
                    rf"{count(len(tuning), 'one-parameter change')} on a coarse grid, so better configurations may "
                    r"lie between the grid points or need several parameters changed together.")
        return (rf"\textbf{{A small search.}} The search created {total} nodes and no tuning node ran, so the "
                r"hyperparameters are the template's defaults.")

    def conclusion(self) -> str:
        a = self.a
        out = []
        if self.question():
            out.append(self.answer())
        result = self.result()
        if result is not None and result.objective is not None and result.best is not None:
            out.append(rf"The search's best configuration reaches a {self.metric} of {_pm(result.objective)} over "
                       rf"{result.objective.n} seeds.")
        largest = self.largest_ablation()
        stats = a.ablation_reference_stats
        if largest is not None and largest.delta is not None:
            spread = stats.stderr if stats is not None and stats.n > 1 else 0.0
            out.append(rf"Among the ablations, switching off \texttt{{{escape(largest.name)}}} has the largest effect "
                       rf"({self.delta(largest.delta, spread)}).")
        out.append(r"The natural next steps are more seeds for the single-run comparisons and a finer search "
                   r"around the best configuration. The run's journal keeps every configuration, outcome and "
                   r"decision, so each number above can be re-derived from it.")
        return " ".join(out)


def _short(reason: str | None, limit: int = 90) -> str:
    if not reason:
        return "no reason recorded"
    line = reason.strip().splitlines()[0] if reason.strip() else reason
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


def labels(figures: Sequence[Figure], tables: Sequence[Table]) -> Mapping[str, str]:
    """Every figure and table label with its caption (what a writer model may refer to)."""
    return {**{f.label: f.caption for f in figures}, **{t.label: t.caption for t in tables}}
