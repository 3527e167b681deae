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

import base64
import dataclasses
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import click
import kubernetes
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

GROUP = 'kubescientist.io'
VERSION = 'v1alpha1'
RUNS = 'researchruns'
CAMPAIGNS = 'researchcampaigns'
NODES = 'experimentnodes'
RUN_LABEL = 'kubescientist.io/run'
JOB_NAME_LABELS = ('batch.kubernetes.io/job-name', 'job-name')
"""The label the Job controller puts on its pods (the second for clusters older than 1.27)."""
CONTAINER = 'node'
"""The container of node, writeup and review pods (adapters/kube/manifests.py)."""
SA_NAMESPACE_FILE = Path('/var/run/secrets/kubernetes.io/serviceaccount/namespace')
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


# -- S3 URIs and credentials ----------------------------------------------------------------------------

def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme != 's3' or not parsed.netloc or not parsed.path.strip('/'):
        raise PluginError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip('/')


def join_uri(folder: str, name: str) -> str:
    return folder.rstrip('/') + '/' + name


@dataclasses.dataclass(frozen=True)
class S3Access:
    """A run's object storage as seen from this machine."""

    endpoint: str
    access_key: str
    secret_key: str
    insecure: bool = False


def s3_access(run: Mapping[str, Any], secret: Mapping[str, Any] | None, endpoint: str | None) -> S3Access:
    """The run's S3 endpoint (or ``endpoint``, when it is reached differently from here) and its Secret's keys."""
    s3 = ((run.get('spec') or {}).get('storage') or {}).get('s3') or {}
    name = (run.get('metadata') or {}).get('name')
    if not s3:
        raise PluginError(f"run {name} has no spec.storage.s3")
    if secret is None:
        raise PluginError(f"the Secret {s3.get('secretRef', {}).get('name')} of run {name} is missing")
    data = secret.get('data') or {}
    try:
        keys = {k: base64.b64decode(data[k]).decode() for k in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY')}
    except KeyError as err:
        raise PluginError(f"Secret {s3['secretRef']['name']} has no key {err.args[0]}") from None
    return S3Access(endpoint=endpoint or s3['endpoint'], access_key=keys['AWS_ACCESS_KEY_ID'],
                    secret_key=keys['AWS_SECRET_ACCESS_KEY'], insecure=bool(s3.get('insecure')))


def read_s3(access: S3Access, uri: str) -> bytes:
    """One object's bytes (minio: the project's S3 client)."""
    import minio  # imported here: only `logs` and `paper` need it
    import minio.error

    bucket, key = split_s3_uri(uri)
    url = urllib.parse.urlsplit(access.endpoint if '://' in access.endpoint else f'https://{access.endpoint}')
    client = minio.Minio(url.netloc, access_key=access.access_key, secret_key=access.secret_key,
                         secure=url.scheme == 'https', cert_check=not access.insecure, region='us-east-1')
    try:
        response = client.get_object(bucket, key)
    except minio.error.S3Error as err:
        raise PluginError(f"{uri}: {err.code}: {err.message}") from None
    except (OSError, ValueError) as err:
        raise PluginError(f"{access.endpoint}: {err} (reachable from here? --s3-endpoint overrides it)") from None
    try:
        data: bytes = response.read()
        return data
    finally:
        response.close()
        response.release_conn()


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

    def read_object(self, access: S3Access, uri: str) -> bytes: ...

    def get_object(self, plural: str, name: str) -> dict[str, Any]: ...

    def patch_spec(self, plural: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]: ...


class KubeApi:
    """``Api`` over the official client, configured like kubectl."""

    def __init__(self, namespace: str | None, kubeconfig: str | None, context: str | None) -> None:
        config = kubernetes.config
        try:
            config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            if kubeconfig or context:
                raise PluginError(f"kubeconfig {kubeconfig or '(default)'}, context {context or '(current)'}: "
                                  "cannot be loaded") from None
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                raise PluginError("no kubeconfig ($KUBECONFIG, ~/.kube/config, --kubeconfig) and not in a pod") \
                    from None
            default = SA_NAMESPACE_FILE.read_text().strip() if SA_NAMESPACE_FILE.exists() else 'default'
        else:
            # kubectl's rule: the namespace of the context in use, else "default".
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            chosen = next((c for c in contexts if c['name'] == context), active) if context else active
            default = ((chosen or {}).get('context') or {}).get('namespace') or 'default'
        self.namespace: str = namespace or default
        self.custom = kubernetes.client.CustomObjectsApi()
        self.core = kubernetes.client.CoreV1Api()

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except kubernetes.client.exceptions.ApiException as err:
            if err.status == 404:
                raise PluginError(f"{what} not found in namespace {self.namespace}") from None
            if err.status == 403:
                raise PluginError(f"{what}: forbidden ({_reason(err)})") from None
            raise PluginError(f"{what}: HTTP {err.status}: {_reason(err)}") from None

    def get_run(self, name: str) -> dict[str, Any]:
        run: dict[str, Any] = self._call(f"researchrun {name}", self.custom.get_namespaced_custom_object,
                                         GROUP, VERSION, self.namespace, RUNS, name)
        return run

    def list_nodes(self, run: str) -> list[dict[str, Any]]:
        data = self._call(f"experimentnodes of {run}", self.custom.list_namespaced_custom_object,
                          GROUP, VERSION, self.namespace, NODES, label_selector=f'{RUN_LABEL}={run}')
        return list(data.get('items') or [])

    def get_node(self, name: str) -> dict[str, Any]:
        node: dict[str, Any] = self._call(f"experimentnode {name}", self.custom.get_namespaced_custom_object,
                                          GROUP, VERSION, self.namespace, NODES, name)
        return node

    def set_suspend(self, run: str, suspend: bool) -> dict[str, Any]:
        patched: dict[str, Any] = self._call(
            f"researchrun {run}", self.custom.patch_namespaced_custom_object, GROUP, VERSION, self.namespace,
            RUNS, run, {'spec': {'suspend': suspend}}, _content_type='application/merge-patch+json')
        return patched

    def get_secret(self, name: str) -> dict[str, Any] | None:
        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
        except kubernetes.client.exceptions.ApiException as err:
            if err.status == 404:
                return None
            raise PluginError(f"secret {name}: HTTP {err.status}: {_reason(err)}") from None
        return {'data': dict(secret.data or {})}

    def job_log(self, job: str) -> str:
        pods: list[Any] = []
        for label in JOB_NAME_LABELS:
            found = self._call(f"pods of Job {job}", self.core.list_namespaced_pod, self.namespace,
                               label_selector=f'{label}={job}')
            pods = list(found.items or [])
            if pods:
                break
        if not pods:
            raise PluginError(f"Job {job} has no pod left to read a log from")
        newest = max(pods, key=lambda p: p.metadata.creation_timestamp)
        log: str = self._call(f"log of pod {newest.metadata.name}", self.core.read_namespaced_pod_log,
                              newest.metadata.name, self.namespace, container=CONTAINER)
        return log

    def read_object(self, access: S3Access, uri: str) -> bytes:
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


def _reason(err: Any) -> str:
    import json

    try:
        return str(json.loads(err.body).get('message')) if err.body else str(err.reason)
    except (ValueError, AttributeError):
        return str(err.reason)


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
    access: S3Access
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
