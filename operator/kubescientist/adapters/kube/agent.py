"""The operator's LLM side: the same agent the local runner uses (proposals, node reviews, stage judgements),
with the key read from the run's Secret by the operator and node outputs read back from object storage.

Only the operator process talks to the model: node pods get their code and config, never the key. Each
run has its own client and one event loop (``asyncio.Runner``) that every call of that run goes through,
so the openai client's connections never cross loops; the reconcile pass calls it from its worker thread.
The run's accounts (``llm.json`` next to the journal) are saved with the journal, so the caps of
``spec.llm`` hold across operator restarts and ``status.cost`` shows the whole run's spend.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import pathlib
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from experiment_runtime.pod import TransferError, unpack
from kubescientist.adapters.kube.clients import Kube, config_map_json
from kubescientist.adapters.kube.storage import Store, StorageError
from kubescientist.adapters.llm import MAX_PLOT_BYTES, OUTPUT_TAIL_BYTES, AgentCalls, AgentStopped, llm_enabled
from kubescientist.agent.config import KEY_ENV, KEY_FILE_ENV, from_settings
from kubescientist.agent.context import Idea, NodeOutput, ResearchContext, TemplateCode
from kubescientist.agent.errors import AgentError
from kubescientist.agent.llm import LLMClient
from kubescientist.agent.proposer import LLMProposer
from kubescientist.core.journal import Journal, Node, Outcome
from kubescientist.core.spec import RunSpec

log = logging.getLogger('kubescientist.agent')

DEFAULT_KEY = 'api-key'
"""The Secret data entry holding the API key when ``spec.llm.secretRef.key`` is unset."""


class AgentProblem(Exception):
    """The run's LLM settings cannot be used (a missing Secret, an unreadable idea); the message says which."""


def api_key(run: Mapping[str, Any], spec: RunSpec, kube: Kube) -> str | None:
    """The key from the Secret ``spec.llm.secretRef`` names (read by the operator only); None without one."""
    if spec.llm.secret_ref is None:
        return None
    namespace = run['metadata']['namespace']
    name, key = spec.llm.secret_ref
    key = key or DEFAULT_KEY
    secret = kube.get('v1', 'secrets', namespace, name)
    if secret is None:
        raise AgentProblem(f"spec.llm.secretRef: no Secret {name} in namespace {namespace}")
    data = secret.get('data') or {}
    if key not in data:
        raise AgentProblem(f"spec.llm.secretRef: Secret {name} has no key {key}")
    value = base64.b64decode(data[key]).decode().strip()
    if not value:
        raise AgentProblem(f"spec.llm.secretRef: Secret {name} key {key} is empty")
    return value


def resolve_idea(run: Mapping[str, Any], spec: RunSpec, kube: Kube) -> Idea:
    """The run's idea: inline, or one JSON idea object in a ConfigMap of the run's namespace."""
    if spec.idea.inline is not None:
        return Idea.from_inline(spec.idea.inline)
    if spec.idea.config_map is not None:
        namespace = run['metadata']['namespace']
        name, key = spec.idea.config_map
        key = key or 'idea.json'
        return Idea.from_entry(config_map_json(kube, namespace, name, key, 'spec.idea.configMapRef', AgentProblem,
                                               dict))
    if spec.idea.ideas_file is not None:
        path, name = spec.idea.ideas_file
        raise AgentProblem(f"spec.idea.ideasFile: the operator cannot read {path} (idea {name!r}) on the machine "
                           "that wrote the manifest: ideasFile is for local runs; in a cluster put that entry in a "
                           "ConfigMap (kubectl create configmap <name> --from-file=idea.json=<one entry as JSON>) "
                           "and use spec.idea.configMapRef, or write it in spec.idea.inline")
    raise AgentProblem("spec.idea: in a cluster use spec.idea.inline or spec.idea.configMapRef")


def client_env(key: str | None) -> dict[str, str]:
    """The environment the client config is read from: the operator's own (default model, price table), but
    never its own key: a run gets the key of its own Secret or none (a keyless self-hosted endpoint)."""
    env = {k: v for k, v in os.environ.items() if k not in KEY_ENV and k != KEY_FILE_ENV}
    if key is not None:
        env[KEY_ENV[0]] = key
    return env


class KubeAgent(AgentCalls):
    """A run's LLM agent in the operator: the local runner's calls, with outputs read from object storage."""

    def __init__(self, spec: RunSpec, idea: Idea, template: TemplateCode | None, key: str | None,
                 store: Store) -> None:
        self.spec = spec
        self.store = store
        try:
            config = from_settings(spec.llm, client_env(key))
        except AgentError as err:
            raise AgentProblem(f"spec.llm: {err}") from None
        self.client = LLMClient(config)
        self.ledger = self.client.ledger
        self.journal: Journal | None = None
        """The run's journal (set by the caller), to find each node's latest attempt."""
        self.goal_checked = {}
        self._earlier: list[Any] = []
        saved = store.get_json(store.run_key('llm.json'))
        if isinstance(saved, dict):
            self.ledger.restore(saved.get('accounts') or {})
            self._earlier = list(saved.get('calls') or [])
            self.goal_checked = {str(k): int(v) for k, v in (saved.get('goalChecked') or {}).items()}
        self._saved = self._snapshot()
        self._outputs: dict[tuple[str, int], NodeOutput] = {}
        self.proposer = LLMProposer(self.client, ResearchContext.from_spec(spec, idea, template), self.output)
        self._loop = asyncio.Runner()

    # -- the calls the reconcile pass makes ---------------------------------------------------------------

    def review(self, node: Node, outcome: Outcome) -> Outcome:
        return self.reviewed(node, outcome, self.read_output(node.id, node.attempts))

    # -- node outputs ------------------------------------------------------------------------------------

    def output(self, node_id: str) -> NodeOutput:
        """A finished node's output (its latest attempt's), as its pod uploaded it."""
        node = self.journal.nodes.get(node_id) if self.journal is not None else None
        if node is None or not node.attempts:
            return NodeOutput()
        return self.read_output(node_id, node.attempts)

    def read_output(self, node_id: str, attempt: int) -> NodeOutput:
        cached = self._outputs.get((node_id, attempt))
        if cached is not None:
            return cached
        output = NodeOutput(stdout=self._tail(node_id, attempt, 'stdout.txt'),
                            stderr=self._tail(node_id, attempt, 'stderr.txt'),
                            plots=self._plots(node_id, attempt) if 'vision' in self.spec.llm.models else ())
        self._outputs[(node_id, attempt)] = output
        return output

    def _get(self, node_id: str, attempt: int, name: str) -> bytes | None:
        try:
            return self.store.get(self.store.node_key(node_id, attempt, name))
        except StorageError as err:
            log.warning("%s: cannot read %s of attempt %d: %s", node_id, name, attempt, err)
            return None

    def _tail(self, node_id: str, attempt: int, name: str) -> str:
        data = self._get(node_id, attempt, name) or b''
        return data[-OUTPUT_TAIL_BYTES:].decode('utf-8', errors='replace')

    def _plots(self, node_id: str, attempt: int) -> list[tuple[str, bytes]]:
        data = self._get(node_id, attempt, 'plots.tar.gz')
        if not data:
            return []
        with tempfile.TemporaryDirectory(prefix='ks-plots-') as tmp:
            folder = pathlib.Path(tmp)
            try:
                unpack(data, folder)
            except TransferError as err:
                log.warning("%s: plots of attempt %d cannot be unpacked: %s", node_id, attempt, err)
                return []
            return [(str(png.relative_to(folder)), png.read_bytes()) for png in sorted(folder.rglob('*.png'))
                    if png.stat().st_size <= MAX_PLOT_BYTES]

    # -- accounts ----------------------------------------------------------------------------------------

    def _snapshot(self) -> str:
        return json.dumps([self.ledger.to_dict(), len(self.ledger.calls), self.goal_checked], sort_keys=True,
                          default=str)

    def save(self) -> None:
        """Write the accounts and every call to ``llm.json`` (only when they changed since the last save)."""
        snapshot = self._snapshot()
        if snapshot == self._saved:
            return
        self.store.put_json(self.store.run_key('llm.json'), {
            'accounts': self.ledger.to_dict(), 'goalChecked': self.goal_checked,
            'calls': self._earlier + [c.to_dict() for c in self.ledger.calls]})
        self._saved = snapshot

    def accounts(self) -> dict[str, Any]:
        return self.ledger.to_dict()

    def close(self) -> None:
        """Close the client on the run's own loop, from a thread without a running loop (the operator's event
        loop thread may call this)."""
        def shut() -> None:
            try:
                self._loop.run(self.client.aclose())
            except Exception:  # noqa: BLE001 - closing must not fail the caller
                log.debug("closing the LLM client failed", exc_info=True)
            finally:
                self._loop.close()

        worker = threading.Thread(target=shut, name='ks-agent-close', daemon=True)
        worker.start()
        worker.join(timeout=10)


def build(run: Mapping[str, Any], spec: RunSpec, kube: Kube, store: Store, idea: Idea,
          template: TemplateCode | None) -> KubeAgent | None:
    """The run's agent when ``spec.llm`` configures one; None for an offline run."""
    if not llm_enabled(spec):
        return None
    return KubeAgent(spec, idea, template, api_key(run, spec, kube), store)


__all__ = ['AgentProblem', 'AgentStopped', 'KubeAgent', 'api_key', 'build', 'llm_enabled', 'resolve_idea']
