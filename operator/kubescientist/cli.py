"""The ``kubescientist`` command line."""

from __future__ import annotations

import pathlib
import sys

import click
from rich.console import Console

from kubescientist.adapters.local.files import read_json
from kubescientist.adapters.local.progress import RichReporter
from kubescientist.adapters.local.rundir import RunDir
from kubescientist.adapters.local.runner import LocalRunner, RunError, describe
from kubescientist.adapters.local.treeview import html_page, text_tree
from kubescientist.adapters.manifest import ManifestError, load_run
from kubescientist.core.journal import Journal

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
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
        summary = runner.execute()
    except KeyboardInterrupt:
        console.print(f"\n[yellow]interrupted[/]: finished nodes are kept in {runner.run_dir.journal}; continue "
                      f"with: kubescientist run {manifest} --workdir {workdir} --resume", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except RunError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_FAILED)
    journal = runner.engine.journal
    runner.run_dir.tree_html.write_text(html_page(journal, runner.run.name))
    console.print(f"results: {runner.run_dir.root}  (summary.json, journal.json, nodes/, tree.html)",
                  highlight=False)
    console.print(("[green]" if journal.phase == "succeeded" else "[red]") + describe(summary) + "[/]",
                  highlight=False)
    if journal.phase != "succeeded":
        sys.exit(EXIT_FAILED)


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
        journal = Journal.from_dict(read_json(folder.journal))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        click.echo(f"error: {folder.journal}: not a readable journal ({exc})", err=True)
        sys.exit(EXIT_BAD_INPUT)
    Console().print(text_tree(journal, run_dir.name))
    target = html_path or folder.tree_html
    target.write_text(html_page(journal, run_dir.name))
    click.echo(f"HTML view: {target}")
