"""The ``kubescientist`` command line."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
from typing import Any, Callable

import click
from rich.console import Console

from experiment_runtime import TemplateError, load_template
from kubescientist.adapters.llm import llm_enabled
from kubescientist.adapters.local.agent import PaperAgent
from kubescientist.adapters.local.campaign import CampaignStopped, LocalCampaign, RunFailed
from kubescientist.adapters.local.files import write_json
from kubescientist.adapters.local.gates import GatePaused, approve_gate
from kubescientist.adapters.local.journal_store import JournalStore
from kubescientist.adapters.local.progress import RichReporter
from kubescientist.adapters.local.rundir import RunDir
from kubescientist.adapters.local.runner import LocalRunner, RunError
from kubescientist.adapters.local.treeview import local_page, text_tree
from kubescientist.adapters.manifest import ManifestError, load_run
from kubescientist.agent.config import from_settings
from kubescientist.agent.errors import AgentError
from kubescientist.agent.ideas import Ideator, Topic, load_ideas, merge_ideas, parse_topic, topic_from_template
from kubescientist.agent.literature import source_from_env
from kubescientist.agent.llm import LLMClient
from kubescientist.agent.reviewing import DEFAULT_REFLECTIONS, Example, review_team
from kubescientist.core.campaign import CampaignIdea
from kubescientist.core.summary import describe_best, run_best
from kubescientist.paper import LatexBuildError, RecordsError, ToolMissing, load_literature, write_paper
from kubescientist.review import BenchError, Columns, DecisionRule, ReviewReport, SubmissionError, abench, bench
from kubescientist.review.bench import read as read_bench
from kubescientist.review import review as review_paper
from kubescientist.core.spec import LLMSettings, RunSpec

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PAUSED = 3
"""A run (or a campaign's run) waits at a stage gate for approval; --resume goes on once approved."""
EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kubescientist")
def main() -> None:
    """kubescientist: an AI Scientist whose experiment tree search runs on Kubernetes or on one machine."""


@main.command()
@click.argument("manifest", type=click.Path(path_type=pathlib.Path))
@click.option("--workdir", type=click.Path(path_type=pathlib.Path), default=pathlib.Path("runs"),
              show_default=True, help="Where the run's folder <workdir>/<run-name>/ is written.")
@click.option("--resume", is_flag=True, help="Continue the run in <workdir>/<run-name>/ from its journal.")
def run(manifest: pathlib.Path, workdir: pathlib.Path, resume: bool) -> None:
    """Run a ResearchRun MANIFEST in local mode: the whole search on this machine."""
    console = Console()
    try:
        runner = LocalRunner(manifest, workdir, RichReporter(console), resume=resume)
    except (ManifestError, RunError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    try:
        succeeded = _finish_run(console, runner)
    except GatePaused as exc:
        console.print(f"[yellow]paused[/]: {exc}", highlight=False)
        sys.exit(EXIT_PAUSED)
    except KeyboardInterrupt:
        console.print(f"\n[yellow]interrupted[/]: finished nodes are kept in {runner.run_dir.journal}; continue "
                      f"with: kubescientist run {manifest} --workdir {workdir} --resume", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except RunError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_FAILED)
    if not succeeded:
        sys.exit(EXIT_FAILED)


def _finish_run(console: Console, runner: LocalRunner) -> bool:
    """The search, then the paper and its review, then tree.html; whether the search succeeded."""
    summary = runner.execute()
    journal = runner.engine.journal
    console.print(f"results: {runner.run_dir.root}  (summary.json, journal.json, nodes/, tree.html)",
                  highlight=False)
    console.print(("[green]" if journal.phase == "succeeded" else "[red]") + describe_best(summary) + "[/]",
                  highlight=False)
    accounts = summary.get("llm")
    if runner.spec.writeup:
        accounts = _write_and_review(console, runner.run_dir.root, runner.spec, review=runner.spec.review) \
            or accounts
    # Written last, so that it links the paper and review when there are.
    runner.run_dir.tree_html.write_text(local_page(runner.run_dir.root, journal, runner.run.name))
    if accounts:
        console.print(describe_llm(accounts), highlight=False)
    return journal.phase == "succeeded"


@main.command()
@click.argument("manifest", type=click.Path(path_type=pathlib.Path))
@click.option("--workdir", type=click.Path(path_type=pathlib.Path), default=pathlib.Path("runs"),
              show_default=True, help="Where the campaign's folder <workdir>/<campaign-name>/ is written.")
@click.option("--resume", is_flag=True, help="Continue the campaign in <workdir>/<campaign-name>/, re-reading the "
                                             "manifest's approvals.")
@click.option("--approvals", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="Manual approval: a file with one idea name a line to approve (-name rejects).")
def campaign(manifest: pathlib.Path, workdir: pathlib.Path, resume: bool, approvals: pathlib.Path | None) -> None:
    """Run a ResearchCampaign MANIFEST locally: a ResearchRun per approved idea, then campaign.html."""
    console = Console()

    def execute(run_manifest: pathlib.Path, run_workdir: pathlib.Path, resume_run: bool) -> None:
        try:
            runner = LocalRunner(run_manifest, run_workdir, RichReporter(console), resume=resume_run)
            if not _finish_run(console, runner):
                console.print(f"[red]run failed[/]: {runner.engine.journal.message}", highlight=False)
        except (ManifestError, RunError) as exc:
            raise RunFailed(str(exc)) from None
        except GatePaused as exc:
            raise CampaignStopped(f"run {run_manifest.stem} paused: {exc}") from None

    def ask(idea: CampaignIdea) -> bool | None:
        answer = click.prompt(f"approve idea {idea.name} ({idea.title})? [y]es, [n]o, [l]ater", default="l",
                              type=click.Choice(["y", "n", "l"]), show_choices=False)
        return {"y": True, "n": False}.get(answer)

    try:
        local = LocalCampaign(manifest, workdir, execute, resume=resume, approvals=approvals,
                              ask=ask if sys.stdin.isatty() else None,
                              say=lambda text: console.print(text, highlight=False))
    except (ManifestError, CampaignStopped) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    try:
        step = local.execute_all()
    except KeyboardInterrupt:
        console.print(f"\n[yellow]interrupted[/]: continue with: kubescientist campaign {manifest} --workdir "
                      f"{workdir} --resume", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except (CampaignStopped, ManifestError) as exc:
        console.print(f"[yellow]stopped[/]: {exc}", highlight=False)
        sys.exit(EXIT_FAILED)
    console.print(f"campaign: {local.folder.html}", highlight=False)
    if step.phase != "Succeeded":
        sys.exit(EXIT_FAILED)


def _write_and_review(console: Console, run_dir: pathlib.Path, spec: RunSpec, review: bool) -> dict[str, Any] | None:
    """The last steps of a run: the paper, then its review, by the run's writeup and review models where
    spec.llm names them (else offline). A missing LaTeX skips them; the run still counts. Returns the LLM
    accounts, search included, when a model took part (they are saved in llm.json and summary.json)."""
    def say(text: str) -> None:
        console.print(text, highlight=False)

    agent = _paper_agent(say, run_dir, spec)
    try:
        try:
            paper = agent.write_paper() if agent is not None else write_paper(run_dir)
        except ToolMissing as exc:
            say(f"[yellow]paper skipped[/]: {exc}")
            return None
        except LatexBuildError as exc:
            say(f"[red]paper failed[/]: {exc}")
            return None
        say(f"paper: {paper.describe()}")
        if review:
            say(f"review: {_review(say, run_dir, agent).describe()} -> {run_dir / 'review.json'}")
    finally:
        accounts = _close(agent)
    return accounts


def _run_spec(run_dir: pathlib.Path) -> RunSpec | None:
    """The spec a run folder was run with (its run.yaml); None for a folder without a readable one."""
    path = RunDir(run_dir).manifest
    if not path.is_file():
        return None
    try:
        return load_run(path)[0].spec
    except ManifestError:
        return None


def _paper_agent(say: Callable[[str], None], run_dir: pathlib.Path, spec: RunSpec | None) -> PaperAgent | None:
    """The run's LLM for its paper and review, on the run's accounts; None offline (no spec.llm, or one
    that cannot be set up, which is said)."""
    if spec is None or not llm_enabled(spec):
        return None
    try:
        return PaperAgent(spec, RunDir(run_dir))
    except AgentError as exc:
        say(f"LLM not used for the paper and review: spec.llm: {exc}")
        return None


def _review(say: Callable[[str], None], target: pathlib.Path, agent: PaperAgent | None, *,
            reflections: int = DEFAULT_REFLECTIONS, page_limit: int | None = None) -> ReviewReport:
    """The model review where the run has a review model, else (or when the model cannot finish: a cap, the
    endpoint) the rubric review, which says what it is."""
    if agent is not None and agent.model("review") is not None:
        try:
            return agent.review(target, reflections=reflections, page_limit=page_limit)
        except AgentError as exc:
            say(f"model review failed ({exc}); the rubric review instead")
    return review_paper(target, page_limit=page_limit)


def _close(agent: PaperAgent | None) -> dict[str, Any] | None:
    if agent is None:
        return None
    try:
        return agent.save()
    finally:
        agent.close()


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path))
@click.argument("stage", type=click.Choice(["initial", "tuning", "research"]))
def approve(run_dir: pathlib.Path, stage: str) -> None:
    """Approve STAGE of the local run in RUN_DIR that waits at a stage gate; continue it with --resume."""
    try:
        click.echo(approve_gate(run_dir, stage))
    except ManifestError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)


@main.command()
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Serve this namespace (repeatable; globs).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Serve every namespace.")
@click.option("--liveness", default=None, help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
@click.option("--verbose", is_flag=True, help="Log every handler call.")
def operator(namespaces: tuple[str, ...], all_namespaces: bool, liveness: str | None, verbose: bool) -> None:
    """Run the Kubernetes operator (settings from KUBESCIENTIST_* variables)."""
    if bool(namespaces) == all_namespaces:
        raise click.UsageError("give --namespace (one or more) or --all-namespaces")
    # Imported here: kopf registers its handlers at import, which no other command wants.
    from kubescientist.adapters.kube.running import serve

    serve(list(namespaces), clusterwide=all_namespaces, liveness=liveness, verbose=verbose)


@main.command()
@click.argument("manifest", type=click.Path(path_type=pathlib.Path))
def validate(manifest: pathlib.Path) -> None:
    """Check a ResearchRun MANIFEST against the CRD schema and its CEL rules."""
    try:
        run, _ = load_run(manifest)
    except ManifestError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"{manifest}: ResearchRun {run.name} is valid")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path))
@click.option("--html", "html_path", type=click.Path(path_type=pathlib.Path),
              help="Where to write the HTML view (default: RUN_DIR/tree.html).")
def tree(run_dir: pathlib.Path, html_path: pathlib.Path | None) -> None:
    """Print the search tree of a local run and write its HTML visualisation."""
    folder = RunDir(run_dir)
    try:
        journal = JournalStore(folder.root).load()
        if journal is None:
            raise FileNotFoundError(f"no {folder.journal.name} and no {folder.journal_log.name}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        click.echo(f"error: {folder.journal}: not a readable journal ({exc})", err=True)
        sys.exit(EXIT_BAD_INPUT)
    spec = _run_spec(run_dir)
    best = run_best(spec, journal) if spec is not None else None
    Console().print(text_tree(journal, run_dir.name, metric=spec.objective.metric if spec else "metric", best=best))
    target = html_path or folder.tree_html
    target.write_text(local_page(run_dir, journal, run_dir.name))
    click.echo(f"HTML view: {target}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path))
@click.option("--literature", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="A literature JSON file ({\"papers\": [...]}) to cite, besides RUN_DIR/literature.json.")
@click.option("--page-limit", type=click.IntRange(min=1), default=8, show_default=True,
              help="Pages of main text allowed (references and appendix excluded).")
@click.option("--offline", is_flag=True, help="Write without a model even where the run's spec.llm names one.")
def writeup(run_dir: pathlib.Path, literature: pathlib.Path | None, page_limit: int, offline: bool) -> None:
    """Write RUN_DIR's paper, compiled to RUN_DIR/paper/paper.pdf with its sources: by the run's writeup
    model where its spec.llm names one (the calls join the run's LLM accounts), else from its records."""
    agent = None if offline else _paper_agent(click.echo, run_dir, _run_spec(run_dir))
    references = load_literature(literature) if literature else ()
    try:
        result = agent.write_paper(literature=references, page_limit=page_limit) if agent is not None else \
            write_paper(run_dir, literature=references, page_limit=page_limit)
    except (RecordsError, ToolMissing) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except LatexBuildError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        accounts = _close(agent)
    click.echo(result.describe())
    if accounts:
        click.echo(describe_llm(accounts))


@main.command("review")
@click.argument("target", type=click.Path(exists=True, path_type=pathlib.Path))
@click.option("--page-limit", type=click.IntRange(min=1), default=None,
              help="Pages of main text allowed (default: the writer's limit, else 8).")
@click.option("--reflections", type=click.IntRange(0, 10), default=DEFAULT_REFLECTIONS, show_default=True,
              help="Reflection rounds per model reviewer.")
@click.option("--offline", is_flag=True, help="The rubric review even where the run's spec.llm names a model.")
def review_command(target: pathlib.Path, page_limit: int | None, reflections: int, offline: bool) -> None:
    """Review PAPER.pdf or RUN_DIR's paper; writes review.json. The run's spec.reviewers review models and an
    area chair review where its spec.llm names a review model; else (offline) a rubric review, labelled as such."""
    run_dir = target if target.is_dir() else target.resolve().parent.parent
    agent = None if offline else _paper_agent(click.echo, run_dir, _run_spec(run_dir))
    try:
        report = _review(click.echo, target, agent, reflections=reflections, page_limit=page_limit)
    except SubmissionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        accounts = _close(agent)
    click.echo(report.describe())
    if accounts:
        click.echo(describe_llm(accounts))


@main.command("review-bench")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "tsv"]), default=None,
              help="The file's format (default: from its name: .jsonl, .csv, .tsv).")
@click.option("--id-column", default="id", show_default=True, help="The column (JSONL key) of the paper's id.")
@click.option("--text-column", default="text", show_default=True, help="The column of the paper's text.")
@click.option("--decision-column", default="decision", show_default=True,
              help='The column of the human decision ("Accept (Poster)", "Reject", true/false, ...).')
@click.option("--review-column", default="review", show_default=True,
              help="The column of a precomputed review (the form as JSON), scored instead of reviewing.")
@click.option("--threshold", type=click.IntRange(1, 10), default=6, show_default=True,
              help="Accept iff Overall >= THRESHOLD.")
@click.option("--use-decision", is_flag=True, help="Use each review's Decision field instead of the threshold.")
@click.option("--bootstrap", type=click.IntRange(0), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--base-url", envvar="KUBESCIENTIST_LLM_BASE_URL",
              help="Review with a model at this OpenAI-compatible endpoint (.../v1) instead of the rubric.")
@click.option("--model", envvar="KUBESCIENTIST_LLM_MODEL", help="The review model (with --base-url or OpenAI).")
@click.option("--reviewers", type=click.IntRange(1, 10), default=1, show_default=True, help="Ensemble size.")
@click.option("--reflections", type=click.IntRange(0, 10), default=0, show_default=True,
              help="Reflection rounds per model reviewer.")
@click.option("--few-shot", "few_shot", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="Reviewed example papers (same format and columns, each with a review) shown to each reviewer.")
@click.option("--few-shot-count", type=click.IntRange(0), default=1, show_default=True,
              help="How many of the --few-shot examples to show.")
@click.option("--area-chair/--no-area-chair", default=None,
              help="An area chair's meta-review over the ensemble (default: with more than one reviewer).")
@click.option("--ai-scientist", "published", is_flag=True,
              help="The published AI Scientist reviewer's settings: 5 reviewers, 5 reflections, 1 few-shot "
                   "example, an area chair.")
@click.option("--max-cost-usd", type=click.FloatRange(0), help="Stop new LLM work past this cost.")
@click.option("--max-tokens", type=click.IntRange(1), help="Stop new LLM work past this many tokens.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Papers reviewed at once.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Also write the metrics, intervals, per-paper predictions and LLM accounts as JSON.")
def review_bench(file: pathlib.Path, fmt: str | None, id_column: str, text_column: str, decision_column: str,
                 review_column: str, threshold: int, use_decision: bool, bootstrap: int, seed: int,
                 base_url: str | None, model: str | None, reviewers: int, reflections: int,
                 few_shot: pathlib.Path | None, few_shot_count: int, area_chair: bool | None, published: bool,
                 max_cost_usd: float | None, max_tokens: int | None, concurrency: int,
                 json_out: pathlib.Path | None) -> None:
    """Score reviews of FILE (a labelled set: JSONL, CSV or TSV, one paper per record) against its human
    decisions: by the rubric offline, or by a model reviewer at any OpenAI-compatible endpoint."""
    if published:
        reviewers, reflections, few_shot_count, area_chair = 5, 5, 1, True
    columns = Columns(id=id_column, text=text_column, decision=decision_column, review=review_column)
    rule = DecisionRule(threshold=threshold, use_decision_field=use_decision)
    options: dict[str, Any] = {"rule": rule, "columns": columns, "fmt": fmt, "resamples": bootstrap, "seed": seed,
                               "reflections": reflections, "concurrency": concurrency}
    try:
        if model is None and base_url is None:
            result, accounts = bench(file, **options), None
        else:
            if model is None:
                raise AgentError("--model: the review model is required with --base-url")
            examples = _examples(few_shot, columns, fmt, few_shot_count)
            config = from_settings(LLMSettings(base_url=base_url, models={"review": model}, max_tokens=max_tokens,
                                               max_cost_usd=max_cost_usd))
            chair = area_chair if area_chair is not None else reviewers > 1
            result, accounts = asyncio.run(_model_bench(file, config, reviewers, chair, examples, options))
    except (BenchError, AgentError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    reviewer = "rubric (offline)" if accounts is None else \
        f"model {model}: {reviewers} reviewer(s), {reflections} reflection(s), {len(examples)} few-shot example(s)" \
        + (", area chair" if chair else "")
    click.echo(f"reviewer: {reviewer}")
    click.echo(result.metrics.table())
    if accounts is not None:
        click.echo(describe_llm(accounts))
    if json_out is not None:
        json_out.write_text(json.dumps({**result.to_dict(), "reviewer": reviewer, "llm": accounts}, indent=2) + "\n")


def _examples(path: pathlib.Path | None, columns: Columns, fmt: str | None, count: int) -> list[Example]:
    if path is None or count == 0:
        return []
    items = [i for i in read_bench(path, columns, fmt) if i.review is not None and i.text]  # type: ignore[arg-type]
    if not items:
        raise BenchError(f"{path}: no example with both a text and a review")
    return [Example(i.text, json.dumps(i.review, indent=1)) for i in items[:count]]


async def _model_bench(file: pathlib.Path, config: Any, reviewers: int, chair: bool, examples: list[Example],
                       options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The benchmark by model reviewers on one client, whose ledger is the run's own cost accounting."""
    client = LLMClient(config)
    try:
        team, area_chair = review_team(client, reviewers, examples=examples)
        result = await abench(file, reviewers=team, chair=area_chair if chair else None, **options)
    finally:
        await client.aclose()
    return result, client.ledger.to_dict()


def describe_llm(accounts: dict[str, Any]) -> str:
    """One line on what the LLM work used (and why it stopped, if a cap stopped it)."""
    total = accounts["total"]
    unpriced = f" (no price for {', '.join(accounts['unpricedModels'])}: tokens only)" \
        if accounts["unpricedModels"] else ""
    line = (f"LLM: {total['calls']} calls, {total['promptTokens']} + {total['completionTokens']} tokens, "
            f"${total['usd']:.4f}{unpriced}, {total['retries']} retries")
    return line + (f"; stopped: {accounts['stopped']}" if accounts.get("stopped") else "")


def _topic_of(path: pathlib.Path) -> tuple[Topic, list[dict[str, Any]], pathlib.Path]:
    """A markdown topic file, or a template folder (its prompt.json or seed_ideas.json naming the folder): the
    topic, the template's seed ideas, and where the ideas file goes by default (beside the file or folder)."""
    if path.is_file() and path.name in ("prompt.json", "seed_ideas.json"):
        path = path.parent
    path = path.resolve()
    if not path.is_dir():
        return parse_topic(path.read_text(), str(path)), [], path.with_suffix(".json")
    try:
        template = load_template(path)
    except TemplateError as exc:
        raise AgentError(f"TOPIC: {exc} (give a markdown topic file, or a template folder)") from None
    prompt = template.prompt if template.kind == "v1" else {"task_description": template.description}
    if template.kind == "native" and not template.description.strip():
        raise AgentError(f"{path / 'kubescientist.yaml'}: description: needed to generate ideas from the template "
                         "(what the experiment does and what to explore)")
    if template.kind == "v1" and prompt is None:
        raise AgentError(f"{path}: no prompt.json: an AI Scientist v1 template needs one to generate ideas from "
                         '({"system": ..., "task_description": ...})')
    code = (path / template.entrypoint).read_text(errors="replace")
    return topic_from_template(template.name, prompt, code), [dict(i) for i in template.seed_ideas], \
        path.parent / f"{path.name}.ideas.json"


@main.command()
@click.argument("topic", type=click.Path(exists=True, path_type=pathlib.Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="The ideas JSON file (default: TOPIC with .json, or <folder>.ideas.json beside a template "
                   "folder); an existing file is extended.")
@click.option("--count", type=click.IntRange(1, 100), default=3, show_default=True, help="How many new ideas.")
@click.option("--reflections", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Reflection rounds per idea.")
@click.option("--literature", type=click.Choice(["semantic-scholar", "openalex", "offline"]),
              default="semantic-scholar", show_default=True, help="Where the literature searches go.")
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="The offline corpus: a JSON list of papers or a BibTeX file.")
@click.option("--base-url", envvar="KUBESCIENTIST_LLM_BASE_URL", help="An OpenAI-compatible endpoint (.../v1).")
@click.option("--model", envvar="KUBESCIENTIST_LLM_MODEL",
              help="The ideation model. Without one, a template's seed ideas are written as they are.")
@click.option("--max-tokens", type=click.IntRange(1), help="Stop new LLM work past this many tokens.")
@click.option("--max-cost-usd", type=click.FloatRange(0), help="Stop new LLM work past this cost.")
def ideas(topic: pathlib.Path, out: pathlib.Path | None, count: int, reflections: int, literature: str,
          corpus: pathlib.Path | None, base_url: str | None, model: str | None, max_tokens: int | None,
          max_cost_usd: float | None) -> None:
    """Generate research ideas, each with a novelty verdict and the papers behind it, into an ideas JSON file a
    ResearchRun can take (spec.idea.ideasFile).

    TOPIC is a markdown file (Title, Keywords, TL;DR, Abstract) or a template folder. For an AI Scientist v1
    template, prompt.json's task_description is the topic, its system text joins the model's system prompt,
    experiment.py is the code the ideas must fit, and seed_ideas.json starts the ideas file: the seeds are kept
    as they are (usable offline, with no model), and new ideas must differ from them."""
    try:
        parsed, seeds, default_out = _topic_of(topic)
        out = out or default_out
        existing = load_ideas(out.read_text(), str(out)) if out.exists() else list(seeds)
        if not model:
            if not seeds:
                raise AgentError("--model: no ideation model (set --model or KUBESCIENTIST_LLM_MODEL)")
            write_json(out, existing)
            click.echo(f"no model: {len(existing)} idea(s) in {out}, the template's {len(seeds)} seed idea(s) as "
                       "they are; set --model to generate new ones")
            return
        config = from_settings(LLMSettings(base_url=base_url, models={"ideation": model}, max_tokens=max_tokens,
                                           max_cost_usd=max_cost_usd))
        source = source_from_env(literature, corpus)
    except (AgentError, OSError, UnicodeDecodeError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    known = {str(e.get("name") or e.get("Name")) for e in existing}
    earlier = existing + [s for s in seeds if str(s.get("name") or s.get("Name")) not in known]

    async def generate() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        client = LLMClient(config)
        try:
            made = await Ideator(client, source, reflections=reflections).generate(parsed, count, earlier)
        finally:
            await client.aclose()
            await source.aclose()
        return made, client.ledger.to_dict()

    try:
        made, accounts = asyncio.run(generate())
    except AgentError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    write_json(out, merge_ideas(existing, made))
    for entry in made:
        novelty = entry["novelty"]
        click.echo(f"{entry['name']}: {novelty['verdict']} ({len(novelty['papers'])} papers cited) - {entry['title']}")
    click.echo(f"{len(made)} new idea(s) in {out}; {describe_llm(accounts)}")
    if len(made) < count:
        sys.exit(EXIT_FAILED)
