"""Publication figures drawn from the run's records (never from a model's code): vector PDF plus PNG.

Each figure shows seeds as mean ± standard error wherever a configuration was run with several seeds, and
says so in its caption; single runs are drawn as single runs.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
from typing import Any, Literal, Sequence, cast

import matplotlib
import PIL.Image

matplotlib.use("Agg")  # the writer runs headless, in a pod or a test
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from kubescientist.paper.analysis import Comparison, RunAnalysis, StageResult  # noqa: E402
from kubescientist.paper.fmt import escape, label, mean_pm, number  # noqa: E402

TEXT_WIDTH_IN = 5.5
"""The template's text width: figures are drawn at their printed size so fonts print at their set size."""

STAGE_COLOURS = {"initial": "#7f7f7f", "tuning": "#1f77b4", "research": "#9467bd", "ablation": "#ff7f0e"}
"""Stages are told apart by colour; none is green or red, which mean better and worse throughout the paper."""
DATASET_COLOURS = ("#1f77b4", "#9467bd", "#8c564b", "#17becf", "#ff7f0e")
BETTER, WORSE, NOISE = "#007326", "#b30d0d", "#9e9e9e"
"""The paper's colours for a change: the tables' ksgood and ksbad, and grey where it is within noise."""
MAX_PANELS = 3
"""More panels than this print too small to read at text width."""

STYLE: dict[str, Any] = {
    "font.family": "serif",
    "font.serif": ["STIXGeneral", "DejaVu Serif"],
    "mathtext.fontset": "stix",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "pdf.fonttype": 42,  # TrueType: conferences reject Type 3 fonts
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
}

Section = Literal["results", "ablations", "appendix"]


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure of the paper."""

    name: str
    """File stem under ``figures/`` and the label suffix (``fig:<name>``)."""
    caption: str
    """The caption, LaTeX."""
    section: Section
    """Where the template places it."""
    pdf: pathlib.Path | None
    """The vector version, included in the paper (None for a program's own PNG)."""
    png: pathlib.Path
    """The raster version (for previews and vision models)."""
    width: float = 1.0
    """Printed width as a fraction of the text width."""

    @property
    def label(self) -> str:
        return f"fig:{self.name}"

    @property
    def include(self) -> str:
        """The path ``\\includegraphics`` uses, relative to the paper's folder."""
        path = self.pdf or self.png
        return f"figures/{path.name}"


def draw_all(analysis: RunAnalysis, out: pathlib.Path) -> list[Figure]:
    """Every figure the run's records support, written under ``out`` (the ``figures/`` folder)."""
    out.mkdir(parents=True, exist_ok=True)
    figures: list[Figure | None] = []
    # matplotlib types rc keys as a Literal of every known name; the style is checked by matplotlib at runtime.
    with plt.rc_context(cast(Any, STYLE)):
        figures += [_stages(analysis, out), _curves(analysis, out), _search(analysis, out),
                    _comparisons(analysis, out, "variants"), _comparisons(analysis, out, "ablations")]
    figures += _program_plots(analysis, out)
    return [f for f in figures if f is not None]


def _save(fig: MplFigure, out: pathlib.Path, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    pdf, png = out / f"{name}.pdf", out / f"{name}.png"
    # A fixed creation date keeps the PDF byte-identical between builds of the same run.
    fig.savefig(pdf, metadata={"CreationDate": None})
    fig.savefig(png, dpi=200)
    plt.close(fig)
    return pdf, png


def _metric_label(analysis: RunAnalysis) -> str:
    return label(analysis.metric)


def _caption_metric(analysis: RunAnalysis) -> str:
    """The metric's label where it starts a caption sentence."""
    text = escape(label(analysis.metric))
    return text[:1].upper() + text[1:]


def _result_stages(analysis: RunAnalysis) -> list[StageResult]:
    """Stages whose best is a candidate result: the ablation stage's best has a component switched off, and a
    stage that kept its root would only repeat the previous stage's point."""
    return [s for s in analysis.stages if s.name != "ablation" and s.objective is not None and s.best is not None
            and not s.kept_root]


def _stages(analysis: RunAnalysis, out: pathlib.Path) -> Figure | None:
    stages = _result_stages(analysis)
    if not stages:
        return None
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN * 0.48, 2.1))
    for x, stage in enumerate(stages):
        stats = stage.objective
        assert stats is not None and stage.best is not None
        colour = STAGE_COLOURS[stage.name]
        spread = [x + 0.12 * (i - (stats.n - 1) / 2) / max(stats.n - 1, 1) for i in range(stats.n)]
        ax.scatter(spread, stats.values, s=10, facecolors="none", edgecolors=colour, linewidths=0.8, zorder=2)
        ax.errorbar([x + 0.22], [stats.mean], yerr=[stats.stderr], fmt="o", color=colour, markersize=4,
                    capsize=3, elinewidth=1.0, zorder=3)
    ax.set_xticks(range(len(stages)), [f"{s.name}\n({s.best.id if s.best else ''})" for s in stages])
    ax.set_xlim(-0.5, len(stages) - 0.3)
    ax.set_ylabel(_metric_label(analysis))
    ax.grid(axis="x", visible=False)
    pdf, png = _save(fig, out, "stages")
    seeds = sorted({s.objective.n for s in stages if s.objective})
    caption = rf"\textbf{{Best configuration of each stage.}} {_caption_metric(analysis)} of each stage's best node"
    if seeds[-1] > 1:
        caption += (r": open circles are individual seeds, filled markers the mean $\pm$ standard error over "
                    rf"{' or '.join(str(n) for n in seeds)} seeds.")
    else:
        caption += " (one run each: the run re-evaluated no seeds, so there are no error bars)."
    return Figure("stages", caption, "results", pdf, png, width=0.48)


def _curves(analysis: RunAnalysis, out: pathlib.Path) -> Figure | None:
    stages = [s for s in _result_stages(analysis) if any(analysis.metric in m for m in s.curves.values())]
    datasets = [d for d in analysis.datasets if any(analysis.metric in s.curves.get(d, {}) for s in stages)]
    datasets = datasets[:MAX_PANELS]
    if not datasets:
        return None
    fig, axes = plt.subplots(1, len(datasets), figsize=(TEXT_WIDTH_IN, 2.0), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        for stage in stages:
            curve = stage.curves.get(dataset, {}).get(analysis.metric)
            if curve is None:
                continue
            colour = STAGE_COLOURS[stage.name]
            ax.plot(curve.step, curve.mean, color=colour, label=f"{stage.name} ({stage.best.id if stage.best else ''})")
            if curve.n > 1:
                low = [m - e for m, e in zip(curve.mean, curve.stderr)]
                high = [m + e for m, e in zip(curve.mean, curve.stderr)]
                ax.fill_between(curve.step, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.set_title(label(dataset))
        ax.set_xlabel("training step")
    axes[0][0].set_ylabel(_metric_label(analysis))
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(names), frameon=False)
    pdf, png = _save(fig, out, "curves")
    caption = (rf"\textbf{{Training curves.}} {_caption_metric(analysis)} during training of each stage's "
               r"best configuration, per dataset; lines are the mean over seeds and shaded bands the standard error.")
    return Figure("curves", caption, "results", pdf, png)


def _search(analysis: RunAnalysis, out: pathlib.Path) -> Figure | None:
    nodes = [n for n in analysis.records.journal.nodes.values() if n.action != "seed"]
    if sum(1 for n in nodes if n.good) < 2:
        return None  # one point is not a search worth a figure
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN * 0.48, 2.1))
    good = [(n, n.metric) for n in nodes if n.metric is not None and n.good]
    floor = min(value for _, value in good)
    for stage in analysis.stages:
        members = [(n, value) for n, value in good if n.stage == stage.name]
        ax.scatter([n.seq for n, _ in members], [value for _, value in members], s=14,
                   color=STAGE_COLOURS[stage.name], label=stage.name, zorder=3)
    broken = [n for n in nodes if not n.good and n.status in ("buggy", "failed")]
    if broken:
        ax.scatter([n.seq for n in broken], [floor] * len(broken), marker="x", s=18, color="black",
                   label="buggy", zorder=3)
    best: list[tuple[int, float]] = []
    for n, value in sorted(good, key=lambda pair: pair[0].seq):
        if n.stage == "ablation":
            continue
        if not best or analysis.improves(value - best[-1][1]):
            best.append((n.seq, value))
        else:
            best.append((n.seq, best[-1][1]))
    if best:
        ax.step([b[0] for b in best], [b[1] for b in best], where="post", color="black", linewidth=0.8,
                alpha=0.6, label="best so far")
    ax.set_xlabel("node (creation order)")
    ax.set_ylabel(_metric_label(analysis))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.28), columnspacing=1.0,
              handletextpad=0.3)
    pdf, png = _save(fig, out, "search")
    caption = (rf"\textbf{{The search.}} {_caption_metric(analysis)} of every search node in the order the "
               r"engine created it (one seed each; seed re-runs omitted), coloured by stage; crosses mark nodes "
               r"that produced no result; the line is the best non-ablated result so far.")
    return Figure("search", caption, "results", pdf, png, width=0.48)


def _comparisons(analysis: RunAnalysis, out: pathlib.Path, kind: Literal["variants", "ablations"]) -> Figure | None:
    rows: Sequence[Comparison] = analysis.variants if kind == "variants" else analysis.ablations
    reference = analysis.variant_reference if kind == "variants" else analysis.ablation_reference
    stats = analysis.variant_reference_stats if kind == "variants" else analysis.ablation_reference_stats
    if not rows or reference is None or stats is None:
        return None
    names = [f"reference\n({reference.id})", *[c.name.replace("_", " ") for c in rows]]
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN * 0.48, 0.6 + 0.3 * len(names)))
    positions = list(range(len(names)))[::-1]
    ax.axvline(stats.mean, color="black", linewidth=0.8, linestyle="--", alpha=0.6)
    if stats.n > 1:
        ax.errorbar([stats.mean], [positions[0]], xerr=[2 * stats.stderr], fmt="s", color="black",
                    markersize=3, capsize=2, elinewidth=0.8)
    else:
        ax.scatter([stats.mean], [positions[0]], color="black", s=16, zorder=3)
    for y, c in zip(positions[1:], rows):
        if c.value is None or c.delta is None:
            ax.annotate("no result (buggy)", (stats.mean, y), fontsize=7, ha="right", va="center")
            continue
        within = stats.n > 1 and abs(c.delta) <= 2 * stats.stderr
        colour = NOISE if within or c.delta == 0 else BETTER if analysis.improves(c.delta) else WORSE
        ax.barh([y], [c.delta], left=[stats.mean], height=0.45, color=colour, zorder=2)
    ax.set_yticks(positions, names)
    ax.set_xlabel(_metric_label(analysis))
    ax.grid(axis="y", visible=False)
    pdf, png = _save(fig, out, kind)
    what = "variant of the research agenda" if kind == "variants" else "ablation (one component switched off)"
    caption = (rf"\textbf{{{'Variants' if kind == 'variants' else 'Ablations'}.}} {_caption_metric(analysis)} "
               rf"of each {what} (one run each), drawn as its change from the reference {escape(reference.id)}")
    if stats.n > 1:
        caption += (rf", whose mean over {stats.n} seeds ({mean_pm(stats.mean, stats.stderr, stats.n)}) is the "
                    r"dashed line, with twice its standard error. Green: better beyond that band; red: worse; "
                    r"grey: within it.")
    else:
        caption += rf" (dashed line, {number(stats.mean)}, a single run). Green: better; red: worse."
    # Variants and ablations are the same kind of plot: printed side by side, near the ablations.
    return Figure(kind, caption, "ablations", pdf, png, width=0.48)


PROGRAM_FONT_PT = 10.0
"""The font size a program's own plot is assumed to use (matplotlib's default)."""
MIN_FONT_PT = 6.0
"""The smallest font the paper prints: a program plot that would shrink below it is left out."""


def printed_width(plot: pathlib.Path) -> float | None:
    """The fraction of the text width at which ``plot`` prints its text at ``MIN_FONT_PT`` or more, or None when
    even the full width is too narrow (the figure was drawn too wide for its fonts)."""
    with PIL.Image.open(plot) as image:
        dpi = image.info.get("dpi", (100.0, 100.0))[0] or 100.0
        drawn_in = image.size[0] / float(dpi)
    needed_in = drawn_in * MIN_FONT_PT / PROGRAM_FONT_PT
    if needed_in > TEXT_WIDTH_IN:
        return None
    return round(max(0.5, needed_in / TEXT_WIDTH_IN), 2)


def _program_plots(analysis: RunAnalysis, out: pathlib.Path) -> list[Figure]:
    """The best node's own plots, copied unaltered for the appendix, each at a width that keeps its text
    legible; one too wide to print legibly is left out (the paper's own figures redraw the curves)."""
    if analysis.best is None or analysis.best.best is None:
        return []
    node = analysis.best.best
    figures = []
    for i, plot in enumerate(analysis.records.plots(node.id)[:2]):
        try:
            width = printed_width(plot)
        except (OSError, PIL.UnidentifiedImageError):
            continue
        if width is None:
            continue
        target = out / f"program-{node.id}-{i}.png"
        shutil.copyfile(plot, target)
        caption = (rf"\textbf{{Plot written by the experiment program}} of node {escape(node.id)} "
                   rf"(\texttt{{{escape(plot.name)}}}), reproduced unaltered.")
        figures.append(Figure(f"program{i}", caption, "appendix", None, target, width=width))
    return figures
