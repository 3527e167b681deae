"""Tables generated from the recorded metrics: no model ever types a number into a table."""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

from kubescientist.paper.analysis import Comparison, RunAnalysis
from kubescientist.paper.fmt import decimals_for, escape, fixed, label, mean_pm, number, param

Section = Literal["setup", "results", "ablations", "appendix"]

MAX_NODE_ROWS = 80
"""The appendix lists at most this many search nodes (a larger run's full list is in its journal)."""


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of the paper."""

    name: str
    """Label suffix (``tab:<name>``)."""
    caption: str
    """The caption, LaTeX (captions go above tables)."""
    body: str
    """The ``tabular`` environment, LaTeX."""
    section: Section
    """Where the template places it."""

    @property
    def label(self) -> str:
        return f"tab:{self.name}"


def build_all(analysis: RunAnalysis) -> list[Table]:
    tables = [_stages(analysis), _best_metrics(analysis), _config(analysis),
              _comparisons(analysis, "variants"), _comparisons(analysis, "ablations"), _nodes(analysis)]
    return [t for t in tables if t is not None]


def _tabular(columns: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [rf"\begin{{tabular}}{{{columns}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _arrow(analysis: RunAnalysis) -> str:
    return r"$\uparrow$" if analysis.objective.direction == "maximize" else r"$\downarrow$"


def _stages(analysis: RunAnalysis) -> Table | None:
    rows = []
    best_id = analysis.best.best.id if analysis.best and analysis.best.best else None
    for stage in analysis.stages:
        counts = stage.counts
        broken = counts.get("buggy", 0) + counts.get("failed", 0)
        nodes = f"{counts.get('succeeded', 0)}/{broken}/{counts.get('total', 0)}"
        if stage.best is None or stage.objective is None:
            rows.append([escape(stage.name), escape(stage.status), nodes, "--", "--", "--", "--"])
            continue
        value = mean_pm(stage.objective.mean, stage.objective.stderr, stage.objective.n)
        if stage.best.id == best_id and not stage.kept_root:
            value = r"$\mathbf{" + value.strip("$") + "}$"
        kept = r"\textsuperscript{*}" if stage.kept_root else ""
        rows.append([escape(stage.name), escape(stage.status), nodes, r"\texttt{" + escape(stage.best.id) + "}" + kept,
                     escape(stage.best.action), value, str(stage.objective.n)])
    if not rows:
        return None
    body = _tabular("llcllcc", ["Stage", "Status", "Nodes", "Best node", "Action",
                                f"{escape(label(analysis.metric))} {_arrow(analysis)}", "Seeds"], rows)
    caption = (r"\textbf{Stage outcomes.} Nodes: succeeded/buggy/total, seed re-runs included. The objective is "
               r"the mean $\pm$ standard error over the seeds of the stage's best node; the run's result is in bold.")
    if any(s.kept_root for s in analysis.stages):
        caption += r" \textsuperscript{*}No node of the stage beat the node it started from."
    return Table("stages", caption, body, "results")


def _best_metrics(analysis: RunAnalysis) -> Table | None:
    stage = analysis.best
    if stage is None or not stage.metrics or stage.best is None:
        return None
    names = list(dict.fromkeys(m for metrics in stage.metrics.values() for m in metrics))
    records = analysis.records.metrics(stage.best)
    header = ["Dataset"]
    for name in names:
        direction = next((records[d][name].get("direction") for d in records if name in records[d]), None)
        arrow = {"maximize": r" $\uparrow$", "minimize": r" $\downarrow$"}.get(str(direction), "")
        header.append(escape(label(name)) + arrow)
    rows = []
    for dataset, metrics in stage.metrics.items():
        row = [escape(label(dataset))]
        for name in names:
            s = metrics.get(name)
            row.append("--" if s is None else mean_pm(s.mean, s.stderr, s.n))
        rows.append(row)
    n = max(s.n for metrics in stage.metrics.values() for s in metrics.values())
    body = _tabular("l" + "c" * len(names), header, rows)
    caption = (rf"\textbf{{Result per dataset.}} Final metrics of the run's best configuration "
               rf"(\texttt{{{escape(stage.best.id)}}}, stage {escape(stage.name)}), mean $\pm$ standard error over "
               rf"{n} seeds.")
    return Table("best", caption, body, "results")


def _config(analysis: RunAnalysis) -> Table | None:
    stage = analysis.best
    first = next((s.best for s in analysis.stages if s.name == "initial" and s.best is not None), None)
    if stage is None or stage.best is None:
        return None
    final = stage.best.config
    start = first.config if first is not None else None
    declared = analysis.records.template.hyperparameters
    keys = list(dict.fromkeys([*declared, *(start.params if start else {}), *final.params]))
    if not keys:
        return None
    rows = []
    for key in keys:
        spec = declared.get(key, {})
        if "values" in spec:
            space = "{" + ", ".join(param(v) for v in spec["values"]) + "}"
        elif "low" in spec and "high" in spec:
            space = f"[{param(spec['low'])}, {param(spec['high'])}]" + (" log" if spec.get("log") else "")
        else:
            space = "--"
        before = param(start.params.get(key, spec.get("default"))) if start else "--"
        after = param(final.params.get(key, spec.get("default")))
        rows.append([r"\texttt{" + escape(key) + "}", space, before, after])
    if final.variant:
        rows.append([r"\textit{variant}", "--", param(start.variant if start else None), param(final.variant)])
    start_id = first.id if first is not None else "--"
    body = _tabular("llcc", ["Parameter", "Search space", f"Initial ({escape(start_id)})",
                             f"Final ({escape(stage.best.id)})"], rows)
    caption = (r"\textbf{Configuration.} The template's declared search space, the first working "
               r"implementation's values and those of the run's best configuration.")
    return Table("config", caption, body, "setup")


def _comparisons(analysis: RunAnalysis, kind: Literal["variants", "ablations"]) -> Table | None:
    rows_in: Sequence[Comparison] = analysis.variants if kind == "variants" else analysis.ablations
    reference = analysis.variant_reference if kind == "variants" else analysis.ablation_reference
    stats = analysis.variant_reference_stats if kind == "variants" else analysis.ablation_reference_stats
    if not rows_in or reference is None or stats is None:
        return None
    places = decimals_for(stats.stderr) if stats.n > 1 else None
    rows = [[r"\textit{reference}", r"\texttt{" + escape(reference.id) + "}", "--",
             mean_pm(stats.mean, stats.stderr, stats.n), "--"]]
    for c in rows_in:
        value = "buggy" if c.value is None else fixed(c.value, places)
        delta = "--" if c.delta is None else fixed(c.delta, places, sign=True)
        within = c.delta is not None and stats.n > 1 and abs(c.delta) <= 2 * stats.stderr
        if c.delta is not None and c.delta != 0 and not within:
            delta = (r"\textcolor{ksgood}{" if analysis.improves(c.delta) else r"\textcolor{ksbad}{") + delta + "}"
        rows.append([r"\texttt{" + escape(c.name) + "}", r"\texttt{" + escape(c.node.id) + "}",
                     escape(c.description) or "--", value, delta])
    body = _tabular(r"ll>{\raggedright\arraybackslash}p{0.3\linewidth}cc", ["Name", "Node", "What it changes",
                                              f"{escape(label(analysis.metric))} {_arrow(analysis)}", r"$\Delta$"],
                    rows)
    what = "research-agenda variant" if kind == "variants" else "ablation"
    against = (rf"the mean $\pm$ standard error of the node it modifies (\texttt{{{escape(reference.id)}}}) over "
               rf"{stats.n} seeds" if stats.n > 1 else rf"the node it modifies (\texttt{{{escape(reference.id)}}}, "
               r"a single run)")
    caption = (rf"\textbf{{{'Variants' if kind == 'variants' else 'Ablations'}.}} Each {what} (one run) against "
               rf"{against}; $\Delta$ is the difference, green where it improves the objective and red where it "
               r"worsens it by more than twice the reference's standard error, black within that.")
    return Table(kind, caption, body, "ablations" if kind == "ablations" else "results")


def _nodes(analysis: RunAnalysis) -> Table | None:
    nodes = list(analysis.records.journal.nodes.values())
    if not nodes:
        return None
    rows = []
    for node in nodes[:MAX_NODE_ROWS]:
        what = "seed " + str(node.config.seed) if node.action == "seed" else next(
            (t.what for s in analysis.stages for t in s.trials if t.node.id == node.id), node.action)
        value = number(node.metric) if node.metric is not None else escape(node.status)
        rows.append([r"\texttt{" + escape(node.id) + "}", escape(node.stage), escape(node.action),
                     r"\texttt{" + escape(node.parent) + "}" if node.parent else "--",
                     escape(what).replace(r"-\textgreater{}", r"$\to$"), value])
    body = _tabular(r"llll>{\raggedright\arraybackslash}p{0.36\linewidth}r",
                    ["Node", "Stage", "Action", "Parent", "What it tried", escape(label(analysis.metric))], rows)
    caption = (r"\textbf{Every node of the search}, in creation order, with its objective value (one seed) or the "
               r"state it ended in.")
    if len(nodes) > MAX_NODE_ROWS:
        caption += rf" The first {MAX_NODE_ROWS} of {len(nodes)} nodes; the run's journal holds all of them."
    return Table("nodes", caption, body, "appendix")
