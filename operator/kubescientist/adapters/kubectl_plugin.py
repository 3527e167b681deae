"""``kubectl-scientist``: ResearchRuns from the command line, as a kubectl plugin.

kubectl runs any ``kubectl-<name>`` executable on PATH as ``kubectl <name>``; ``pip install kubescientist``
installs this one as a console script, so::

    kubectl scientist tree RUN [-n NS]           the search tree: stage, action, metric, buggy marks, the best node
    kubectl scientist tree RUN --html FILE       the same page as a local run's tree.html, from object storage
    kubectl scientist logs NODE [--stderr]       a node's program output (object storage), or its pod's log
    kubectl scientist paper RUN [-o FILE]        download the run's paper (status.paper.uri)
    kubectl scientist suspend RUN                no new node starts (running ones finish): spec.suspend=true
    kubectl scientist resume RUN                 spec.suspend=false

It reads what the operator writes (ExperimentNode and ResearchRun status) and writes nothing but
``spec.suspend``: the same rights as ``kubectl get`` and ``kubectl patch`` on runs, plus reading the run's
S3 Secret (or its pods' logs) for ``logs`` and ``paper``. Credentials come from the kubeconfig, like
kubectl's (``--kubeconfig``, ``--context``, ``$KUBECONFIG``), or from the pod's service account in a cluster.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import click
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from kubescientist.adapters.kube import clients, storage
from kubescientist.adapters.kube.clients import JOB_NAME_LABELS
from kubescientist.adapters.kube.manifests import CONTAINER
from kubescientist.adapters.kube.naming import CAMPAIGNS, GROUP, NODES, RUN_LABEL, RUNS, VERSION
from kubescientist.adapters.kube.storage import S3Config
PIPE_WIDTH = 1000


class PluginError(click.ClickException):
    """A problem the user can act on: printed as ``error: <message>``, exit code 1."""


# -- the search tree, from objects as the API returns them (pure) ---------------------------------------

@dataclasses.dataclass(frozen=True)
class NodeRow:
    """What the tree shows of one ExperimentNode."""

    name: str
    node_id: str
    parent: str | None
    stage: str
    action: str
    phase: str
    metric: float | None
    buggy_reason: str | None
    message: str | None
    duration_seconds: float | None
    seed: int | None


def node_row(obj: Mapping[str, Any], run: str) -> NodeRow:
    meta, spec, status = obj.get('metadata') or {}, obj.get('spec') or {}, obj.get('status') or {}
    name = str(meta.get('name', ''))
    prefix = f'{run}-'
    metric = status.get('metric')
    duration = status.get('durationSeconds')
    seed = (spec.get('config') or {}).get('seed')
    return NodeRow(
        name=name, node_id=name[len(prefix):] if name.startswith(prefix) else name,
        parent=spec.get('parent') or None, stage=str(spec.get('stage', '?')), action=str(spec.get('action', '?')),
        phase=str(status.get('phase') or 'Pending'),
        metric=float(metric) if isinstance(metric, (int, float)) and not isinstance(metric, bool) else None,
        buggy_reason=status.get('buggyReason') if status.get('buggy') else None,
        message=status.get('message'),
        duration_seconds=float(duration) if isinstance(duration, (int, float)) else None,
        seed=seed if isinstance(seed, int) else None)


MARKS = {'Succeeded': ('✓', 'green'), 'Buggy': ('✗', 'red'), 'Failed': ('!', 'magenta'),
         'Running': ('…', 'cyan'), 'Pending': ('○', 'dim')}
"""Phase -> (mark, style). Buggy: the program's fault; Failed: the infrastructure's (evicted, lost...)."""


def _label(row: NodeRow, metric_name: str, best: str | None) -> Text:
    mark, style = MARKS.get(row.phase, ('?', 'yellow'))
    text = Text()
    text.append(f'{mark} ', style=style)
    text.append(row.node_id, style='bold')
    text.append(f' {row.action}', style='blue')
    text.append(f' [{row.stage}]', style='dim')
    if row.action == 'seed' and row.seed is not None:
        text.append(f' seed={row.seed}', style='dim')
    if row.metric is not None:
        text.append(f' {metric_name}={row.metric:.6g}')
    if row.duration_seconds is not None:
        text.append(f' {row.duration_seconds:.1f}s', style='dim')
    if row.phase == 'Buggy':
        text.append(f' buggy: {_one_line(row.buggy_reason or row.message or "")}', style='red')
    elif row.phase == 'Failed':
        text.append(f' failed: {_one_line(row.message or "")}', style='magenta')
    elif row.phase in ('Running', 'Pending') and row.message:
        text.append(f' ({_one_line(row.message)})', style='dim')
    if best is not None and row.name == best:
        text.append('  ★ best', style='bold yellow')
    return text


def _one_line(text: str, limit: int = 100) -> str:
    first = text.strip().splitlines()[-1] if text.strip() else ''  # a traceback's last line says the most
    return first if len(first) <= limit else first[:limit - 3] + '...'


def run_header(run: Mapping[str, Any], count: int) -> Text:
    meta, spec, status = run.get('metadata') or {}, run.get('spec') or {}, run.get('status') or {}
    objective = spec.get('objective') or {}
    text = Text()
    text.append(f"ResearchRun {meta.get('name', '?')}", style='bold')
    text.append(f" {status.get('phase') or 'Pending'}", style='cyan')
    if status.get('stage'):
        text.append(f" stage={status['stage']}")
    if spec.get('suspend'):
        text.append(' (suspended)', style='yellow')
    text.append(f" objective: {objective.get('direction', '?')} {objective.get('metric', '?')}", style='dim')
    best = status.get('bestNode') or {}
    if best.get('name') and isinstance(best.get('metric'), (int, float)):
        spread = f" ± {best['stderr']:.3g}" if isinstance(best.get('stderr'), (int, float)) else ''
        seeds = f" over {best['seeds']} seeds" if best.get('seeds', 1) > 1 else ''
        text.append(f"  best {best['name']} = {best['metric']:.6g}{spread}{seeds}", style='yellow')
    text.append(f'  ({count} nodes)', style='dim')
    waiting = (status.get('nodes') or {}).get('waitingForAdmission')
    if waiting:
        queued: Mapping[str, Any] = next((c for c in status.get('conditions') or () if c.get('type') == 'Queued'), {})
        why = _one_line(str(queued.get('message') or f"{waiting} waiting for admission (Kueue)"), 200)
        text.append(f"\n  queued: {why}", style='yellow')
    return text


def build_tree(run: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> Tree:
    """The run as a rich Tree: drafts at the top, each node under its parent, children in creation order."""
    name = str((run.get('metadata') or {}).get('name', ''))
    metric_name = str(((run.get('spec') or {}).get('objective') or {}).get('metric', 'metric'))
    best = ((run.get('status') or {}).get('bestNode') or {}).get('name')
    rows = sorted((node_row(n, name) for n in nodes), key=lambda r: r.node_id)
    names = {r.name for r in rows}
    children: dict[str | None, list[NodeRow]] = {}
    for row in rows:
        # A parent that is not (or no longer) there: show the node at the top rather than lose it.
        children.setdefault(row.parent if row.parent in names else None, []).append(row)
    tree = Tree(run_header(run, len(rows)), guide_style='dim')

    def add(branch: Tree, parent: str | None) -> None:
        for row in children.get(parent, []):
            add(branch.add(_label(row, metric_name, best)), row.name)

    add(tree, None)
    return tree


def render_tree(run: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], console: Console) -> None:
    console.print(build_tree(run, nodes))


# -- S3 URIs and credentials: the operator's own settings and client (adapters/kube/storage.py) ----------

def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    try:
        return storage.split_uri(uri)
    except ValueError as err:
        raise PluginError(str(err)) from None


def join_uri(folder: str, name: str) -> str:
    return folder.rstrip('/') + '/' + name


def s3_access(run: Mapping[str, Any], secret: Mapping[str, Any] | None, endpoint: str | None) -> S3Config:
    """The run's object storage and its Secret's keys, reached at ``endpoint`` when it is given (from here the
    run's own endpoint may not be reachable)."""
    try:
        return storage.s3_config_of(run, secret, endpoint or '')
    except storage.StorageError as err:
        raise PluginError(f"run {(run.get('metadata') or {}).get('name')}: {err}") from None


def read_s3(access: S3Config, uri: str) -> bytes:
    """One object's bytes."""
    try:
        return storage.read_uri(access, uri)
    except ValueError as err:
        raise PluginError(str(err)) from None
    except storage.StorageError as err:
        raise PluginError(f"{err} (reachable from here? --s3-endpoint overrides the endpoint)") from None


# -- the API ----------------------------------------------------------------------------------------------

class Api(Protocol):
    """What the commands need from the cluster (the unit tests fake it)."""

    namespace: str

    def get_run(self, name: str) -> dict[str, Any]: ...

    def list_nodes(self, run: str) -> list[dict[str, Any]]: ...

    def get_node(self, name: str) -> dict[str, Any]: ...

    def set_suspend(self, run: str, suspend: bool) -> dict[str, Any]: ...

    def get_secret(self, name: str) -> dict[str, Any] | None: ...

    def job_log(self, job: str) -> str: ...

    def read_object(self, access: S3Config, uri: str) -> bytes: ...

    def get_object(self, plural: str, name: str) -> dict[str, Any]: ...

    def patch_spec(self, plural: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]: ...


class KubeApi(clients.KubectlApi):
    """``Api`` over the official client, configured like kubectl; problems are ``PluginError``s."""

    def __init__(self, namespace: str | None, kubeconfig: str | None, context: str | None) -> None:
        super().__init__(namespace, kubeconfig, context, PluginError)

    def read_object(self, access: S3Config, uri: str) -> bytes:
        return read_s3(access, uri)

    def get_object(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self._call(f"{plural[:-1]} {name}", self.custom.get_namespaced_custom_object,
                                         GROUP, VERSION, self.namespace, plural, name)
        return obj

    def patch_spec(self, plural: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self._call(
            f"{plural[:-1]} {name}", self.custom.patch_namespaced_custom_object, GROUP, VERSION, self.namespace,
            plural, name, {'spec': dict(spec)}, _content_type='application/merge-patch+json')
        return patched


# -- commands ---------------------------------------------------------------------------------------------

@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.option('-n', '--namespace', default=None, help="Namespace (default: the kubeconfig context's).")
@click.option('--kubeconfig', default=None, help="Path to the kubeconfig (default: $KUBECONFIG).")
@click.option('--context', default=None, help="The kubeconfig context to use.")
@click.pass_context
def cli(ctx: click.Context, namespace: str | None, kubeconfig: str | None, context: str | None) -> None:
    """ResearchRuns of kubescientist: the search tree, node logs, the paper, suspend and resume."""
    if ctx.obj is None:  # the unit tests pass a fake Api as obj
        ctx.obj = _Lazy(namespace, kubeconfig, context)
    elif namespace:
        ctx.obj.namespace = namespace


@dataclasses.dataclass
class _Lazy:
    """Connect only when a command runs (``--help`` must work without a cluster)."""

    namespace: str | None
    kubeconfig: str | None
    context: str | None

    def api(self) -> Api:
        return KubeApi(self.namespace, self.kubeconfig, self.context)


def _api(ctx: click.Context) -> Api:
    obj = ctx.find_root().obj
    return obj.api() if isinstance(obj, _Lazy) else obj


def _namespace_option(f: Any) -> Any:
    """``-n`` after the subcommand too, as kubectl users type it (``kubectl scientist tree RUN -n NS``)."""
    def set_namespace(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
        if value:
            ctx.find_root().obj.namespace = value  # a _Lazy, or the tests' fake Api

    return click.option('-n', '--namespace', 'namespace_', default=None, expose_value=False, is_eager=True,
                        callback=set_namespace, help="Namespace (default: the kubeconfig context's).")(f)


@cli.command()
@click.argument('run')
@_namespace_option
@click.option('--html', 'html_path', type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the run's tree.html (code, output, plots, diffs per node) from its object storage.")
@click.option('--s3-endpoint', default=None,
              help="Reach the run's object storage here instead of at its spec.storage.s3.endpoint.")
@click.pass_context
def tree(ctx: click.Context, run: str, html_path: Path | None, s3_endpoint: str | None) -> None:
    """The search tree of RUN: each node's stage, action, objective metric and outcome; ★ marks the best."""
    api = _api(ctx)
    obj = api.get_run(run)
    nodes = api.list_nodes(run)
    # Piped (grep, a file): one line per node, however long, rather than rich's 80-column wrapping.
    width = None if sys.stdout.isatty() else PIPE_WIDTH
    render_tree(obj, nodes, Console(highlight=False, width=width))
    if html_path is not None:
        html_path.write_text(cluster_page(api, obj, nodes, s3_endpoint))
        click.echo(f"HTML view: {html_path}")


def run_prefix(run: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> str:
    """The run's folder in object storage (``s3://bucket/prefix/runs/<ns>/<run>/``), from where its nodes'
    artifacts or its paper were stored."""
    for node in nodes:
        uri = (((node.get('status') or {}).get('artifacts') or {}).get('uri')) or ''
        if '/nodes/' in uri:
            return uri[:uri.rindex('/nodes/') + 1]
    paper = (((run.get('status') or {}).get('paper') or {}).get('uri')) or ''
    if '/paper/' in paper:
        return paper[:paper.rindex('/paper/') + 1]
    name = (run.get('metadata') or {}).get('name', '?')
    raise PluginError(f"run {name} has nothing in object storage yet (no node artifacts, no paper)")


@dataclasses.dataclass
class StorageFiles:
    """A cluster run's node files (``treeview.NodeFiles``), read from the artifacts in each node's status."""

    api: Api
    access: S3Config
    artifacts: dict[str, Mapping[str, Any]]
    """Node id -> its status.artifacts."""

    def read(self, node: Any, name: str) -> bytes | None:
        uri = (self.artifacts.get(node.id) or {}).get('uri')
        if not uri:
            return None
        try:
            return self.api.read_object(self.access, join_uri(uri, name))
        except PluginError:
            return None

    def plots(self, node: Any) -> list[str]:
        return [str(p) for p in (self.artifacts.get(node.id) or {}).get('plots') or ()]


def cluster_page(api: Api, run: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]],
                 endpoint: str | None) -> str:
    """tree.html of a cluster run: its journal, each node's outputs and, once the search ended, the template
    (from records.tar.gz) for the code view."""
    import json
    import tempfile

    from experiment_runtime.pod import TransferError, unpack
    from kubescientist.adapters.local.treeview import html_page, program_reader
    from kubescientist.core.journal import Journal

    name = str((run.get('metadata') or {}).get('name', ''))
    secret_name = ((((run.get('spec') or {}).get('storage') or {}).get('s3') or {}).get('secretRef') or {}).get('name')
    access = s3_access(run, api.get_secret(secret_name) if secret_name else None, endpoint)
    prefix = run_prefix(run, nodes)
    try:
        journal = Journal.from_dict(json.loads(api.read_object(access, join_uri(prefix, 'journal.json'))))
    except (ValueError, KeyError, TypeError) as err:
        raise PluginError(f"{join_uri(prefix, 'journal.json')}: not a readable journal ({err})") from None
    artifacts = {node_row(n, name).node_id: ((n.get('status') or {}).get('artifacts') or {}) for n in nodes}
    best = ((run.get('status') or {}).get('bestNode') or {}).get('name')
    best_id = best[len(name) + 1:] if isinstance(best, str) and best.startswith(f'{name}-') else None
    metric = str(((run.get('spec') or {}).get('objective') or {}).get('metric', 'metric'))
    links = {key: value['uri'] for key, value in (run.get('status') or {}).items()
             if key in ('paper', 'review') and isinstance(value, Mapping) and value.get('uri')}
    with tempfile.TemporaryDirectory(prefix='ks-tree-') as tmp:
        template = None
        try:
            unpack(api.read_object(access, join_uri(prefix, 'records.tar.gz')), Path(tmp))
            template = Path(tmp) / 'template'
        except (PluginError, TransferError):
            pass  # the search is still going: no records yet, so only LLM-written code is shown
        return html_page(journal, name, files=StorageFiles(api, access, artifacts),
                         code_of=program_reader(Path(tmp), template), metric=metric, links=links,
                         best=journal.nodes.get(best_id) if best_id else None)


@cli.command()
@click.argument('node')
@_namespace_option
@click.option('--stderr', 'stream', flag_value='stderr', help="The program's stderr instead of its stdout.")
@click.option('--stdout', 'stream', flag_value='stdout', default=True, hidden=True)
@click.option('--source', type=click.Choice(['auto', 'storage', 'pod']), default='auto', show_default=True,
              help="storage: the program's captured output in object storage; pod: the node pod's log "
                   "(the runtime's, both streams); auto: storage, else the pod.")
@click.option('--s3-endpoint', default=None,
              help="Reach the run's object storage here instead of at its spec.storage.s3.endpoint.")
@click.pass_context
def logs(ctx: click.Context, node: str, stream: str, source: str, s3_endpoint: str | None) -> None:
    """The output of NODE (an ExperimentNode, e.g. myrun-n0003) from its status artifacts or its pod."""
    api = _api(ctx)
    obj = api.get_node(node)
    status = obj.get('status') or {}
    artifacts = status.get('artifacts') or {}
    why = ''
    if source in ('auto', 'storage'):
        if artifacts.get('uri') and artifacts.get(stream):
            run = api.get_run(str((obj.get('spec') or {}).get('run')))
            secret_name = ((((run.get('spec') or {}).get('storage') or {}).get('s3') or {}).get('secretRef') or {}) \
                .get('name')
            try:
                access = s3_access(run, api.get_secret(secret_name) if secret_name else None, s3_endpoint)
                data = api.read_object(access, join_uri(artifacts['uri'], artifacts[stream]))
            except PluginError as err:
                if source == 'storage':
                    raise
                why = str(err)
            else:
                click.echo(data.decode(errors='replace'), nl=False)
                return
        elif source == 'storage':
            raise PluginError(f"{node} has no {stream} in its status.artifacts (not run yet?)")
        else:
            why = f"no {stream} recorded in status.artifacts"
    job = status.get('jobName')
    if not job:
        raise PluginError(f"{node} has no Job yet (phase {status.get('phase') or 'Pending'})"
                          + (f"; {why}" if why else ''))
    if why:
        click.echo(f"# {why}; showing the log of Job {job}'s pod", err=True)
    click.echo(api.job_log(str(job)), nl=False)


@cli.command()
@click.argument('run')
@_namespace_option
@click.option('-o', '--output', default=None, help="File to write (default: RUN.pdf; '-' for stdout).")
@click.option('--s3-endpoint', default=None,
              help="Reach the run's object storage here instead of at its spec.storage.s3.endpoint.")
@click.pass_context
def paper(ctx: click.Context, run: str, output: str | None, s3_endpoint: str | None) -> None:
    """Download the paper of RUN (status.paper.uri) once its writeup has finished."""
    api = _api(ctx)
    obj = api.get_run(run)
    uri = ((obj.get('status') or {}).get('paper') or {}).get('uri')
    if not uri:
        phase = (obj.get('status') or {}).get('phase') or 'Pending'
        raise PluginError(f"run {run} has no paper yet (phase {phase}; spec.writeup may be disabled)")
    secret_name = ((((obj.get('spec') or {}).get('storage') or {}).get('s3') or {}).get('secretRef') or {}).get('name')
    access = s3_access(obj, api.get_secret(secret_name) if secret_name else None, s3_endpoint)
    data = api.read_object(access, uri)
    if output == '-':
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(output or f'{run}.pdf')
    target.write_bytes(data)
    click.echo(f"{target} ({len(data)} bytes) from {uri}")


def _suspend(ctx: click.Context, run: str, value: bool) -> None:
    api = _api(ctx)
    patched = api.set_suspend(run, value)
    phase = (patched.get('status') or {}).get('phase') or 'Pending'
    if value:
        click.echo(f"researchrun {run} suspended: no new node starts; running nodes finish (phase {phase})")
    else:
        click.echo(f"researchrun {run} resumed (phase {phase})")


@cli.command()
@click.argument('run')
@_namespace_option
@click.pass_context
def suspend(ctx: click.Context, run: str) -> None:
    """Stop RUN from starting new nodes (spec.suspend=true); running nodes finish and are kept."""
    _suspend(ctx, run, True)


@cli.command()
@click.argument('run')
@_namespace_option
@click.pass_context
def resume(ctx: click.Context, run: str) -> None:
    """Let RUN start nodes again (spec.suspend=false)."""
    _suspend(ctx, run, False)


@cli.command()
@click.argument('campaign')
@click.argument('ideas', nargs=-1, required=True)
@click.option('--reject', is_flag=True, help="Reject the ideas instead (they are dropped, never run).")
@_namespace_option
@click.pass_context
def approve(ctx: click.Context, campaign: str, ideas: tuple[str, ...], reject: bool) -> None:
    """Approve (or --reject) IDEAS of CAMPAIGN: adds them to spec.approval.approved (or rejected)."""
    api = _api(ctx)
    obj = api.get_object(CAMPAIGNS, campaign)
    spec = obj.get('spec') or {}
    known = [i.get('name') for i in ((spec.get('ideas') or {}).get('inline') or ())]
    known += [i.get('name') for i in ((obj.get('status') or {}).get('ideas') or ())]
    unknown = [i for i in ideas if i not in known]
    if unknown:
        raise PluginError(f"spec.approval: {', '.join(unknown)}: not an idea of researchcampaign {campaign} (ideas: "
                          f"{', '.join(str(k) for k in dict.fromkeys(known)) or 'none proposed yet'})")
    approval = dict(spec.get('approval') or {})
    key, other = ('rejected', 'approved') if reject else ('approved', 'rejected')
    approval[key] = list(dict.fromkeys([*(approval.get(key) or []), *ideas]))
    approval[other] = [i for i in approval.get(other) or [] if i not in ideas]
    api.patch_spec(CAMPAIGNS, campaign, {'approval': approval})
    click.echo(f"researchcampaign {campaign}: {key} {', '.join(ideas)}")


@cli.command('approve-stage')
@click.argument('run')
@click.argument('stage', type=click.Choice(['initial', 'tuning', 'research']))
@_namespace_option
@click.pass_context
def approve_stage(ctx: click.Context, run: str, stage: str) -> None:
    """Let RUN go on past its gate after STAGE (adds STAGE to spec.approvedGates)."""
    api = _api(ctx)
    spec = api.get_object(RUNS, run).get('spec') or {}
    if stage not in (spec.get('gates') or []):
        raise PluginError(f"spec.approvedGates: researchrun {run} has no gate after stage {stage} (spec.gates: "
                          f"{', '.join(spec.get('gates') or []) or 'none'})")
    approved = list(dict.fromkeys([*(spec.get('approvedGates') or []), stage]))
    api.patch_spec(RUNS, run, {'approvedGates': approved})
    click.echo(f"researchrun {run}: stage {stage} approved; the next stage starts")


@cli.command('campaign')
@click.argument('name')
@_namespace_option
@click.pass_context
def campaign_command(ctx: click.Context, name: str) -> None:
    """The leaderboard of campaign NAME, its runs by phase, budget used, and its ideas."""
    obj = _api(ctx).get_object(CAMPAIGNS, name)
    status = obj.get('status') or {}
    runs, used = status.get('runs') or {}, status.get('used') or {}
    click.echo(f"researchcampaign {name}: {status.get('phase', 'Pending')}, round {status.get('round', 0)}; runs "
               f"{runs.get('running', 0)} running, {runs.get('succeeded', 0)} succeeded, {runs.get('failed', 0)} "
               f"failed; used {used.get('tokens', 0)} tokens, ${float(used.get('usd', 0.0)):.4f}, "
               f"{float(used.get('gpuHours', 0.0)):.3f} GPU-hours")
    if status.get('message'):
        click.echo(f"  {_one_line(str(status['message']), 200)}")
    by_metric = status.get('bestByMetric') or {}
    if isinstance(by_metric.get('metric'), (int, float)):
        click.echo(f"  best by objective metric: {by_metric.get('run')} ({by_metric.get('idea')}) "
                   f"{by_metric['metric']:.4g}")
    click.echo(f"{'#':>2}  {'run':<40} {'idea':<24} {'score':>6} {'metric':>10}")
    for rank, row in enumerate(status.get('leaderboard') or (), 1):
        score = f"{row['score']:.2f}" if isinstance(row.get('score'), (int, float)) else '-'
        metric = f"{row['metric']:.4g}" if isinstance(row.get('metric'), (int, float)) else '-'
        click.echo(f"{rank:>2}  {row.get('run', ''):<40} {row.get('idea', ''):<24} {score:>6} {metric:>10}")
    for idea in status.get('ideas') or ():
        reason = f": {_one_line(str(idea['reason']), 120)}" if idea.get('reason') else ''
        click.echo(f"  idea {idea['name']} (round {idea.get('round', '?')}): {idea['state']}{reason}")


def main() -> None:
    """The ``kubectl-scientist`` console script."""
    cli(prog_name='kubectl scientist')
