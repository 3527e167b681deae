"""A run's template in the cluster: read from a ConfigMap or an S3 tarball, stored content-addressed.

The operator unpacks the template once per run into a private folder (to read its search space with the
data side's own loader), packs it into a deterministic tarball, and stores it under ``code/<sha256>``, so
every node pod downloads exactly the bytes whose hash its ExperimentNode records. A node whose program
differs from the template (LLM-written code) gets its own tarball, addressed by its own hash.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import pathlib
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from experiment_runtime import Template, TemplateError, load_template
from experiment_runtime.pod import TransferError, pack, unpack
from kubescientist.adapters.kube.storage import Store
from kubescientist.adapters.templates import search_space_of
from kubescientist.agent.program import program_files
from kubescientist.core.journal import NodeConfig
from kubescientist.core.searchspace import SearchSpace
from kubescientist.core.spec import TemplateRef


class TemplateProblem(Exception):
    """The run's template cannot be used; the message names the spec field."""


@dataclasses.dataclass(frozen=True)
class Code:
    """A program, stored: where it is and its content hash."""

    sha256: str
    """Hex digest of the tarball."""
    key: str
    """Its object key (``code/<sha256>.tar.gz``)."""
    uri: str
    """``s3://`` URI of the tarball."""

    @property
    def hash(self) -> str:
        """``sha256:<hex>``, the form of ExperimentNode ``spec.code.hash``."""
        return f'sha256:{self.sha256}'


@dataclasses.dataclass
class RunTemplate:
    """A run's template, materialised for the operator."""

    root: pathlib.Path
    """The unpacked folder (operator-private)."""
    template: Template | None
    """The data side's view of it; None for a template-free run (the LLM writes every program)."""
    space: SearchSpace
    """The engine's view of its search space."""
    code: Code | None
    """The template's own tarball; None for a template-free run."""
    variants: dict[str, Code] = dataclasses.field(default_factory=dict)
    """Tarballs of changed programs, by program hash."""
    description: str = ''
    """What a template-free program's generated manifest says it is (the idea's title)."""

    def code_for(self, config: NodeConfig, store: Store) -> Code:
        """The code a node runs: the template's, or the template with its entrypoint replaced by ``config.code``;
        template-free, the node's program with its generated manifest (the files the local runner writes)."""
        if self.template is None:
            files = program_files(config, None, self.description)  # ValueError for a node without code
        elif config.code is None:
            assert self.code is not None
            return self.code
        else:
            files = {self.template.entrypoint: config.code}
        key = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        if key not in self.variants:
            with tempfile.TemporaryDirectory(prefix='ks-code-') as tmp:
                folder = pathlib.Path(tmp) / 'code'
                shutil.copytree(self.root, folder)
                for name, text in files.items():
                    (folder / name).write_text(text, encoding='utf-8')
                self.variants[key] = store_code(pack(folder), store)
        return self.variants[key]

    @property
    def label(self) -> str:
        """The template's code hash, or what a template-free run has instead (for logs)."""
        return self.code.hash if self.code is not None else 'none (template-free)'

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def store_code(tarball: bytes, store: Store) -> Code:
    """Store a code tarball under its content hash (once: an existing object is the same bytes)."""
    digest = hashlib.sha256(tarball).hexdigest()
    key = store.code_key(digest)
    if not store.exists(key):
        store.put(key, tarball, 'application/gzip')
    return Code(sha256=digest, key=key, uri=store.uri(key))


def files_from_config_map(config_map: Mapping[str, Any], name: str) -> dict[str, bytes]:
    """The files of a flat template folder kept in a ConfigMap (``data`` and ``binaryData``)."""
    files = {key: value.encode() for key, value in (config_map.get('data') or {}).items()}
    files.update({key: base64.b64decode(value) for key, value in (config_map.get('binaryData') or {}).items()})
    if not files:
        raise TemplateProblem(f"spec.template.configMapRef: ConfigMap {name} holds no files")
    return files


def template_free(description: str) -> RunTemplate:
    """A template-free run's stand-in: an empty folder each node's program is written into."""
    root = pathlib.Path(tempfile.mkdtemp(prefix='ks-template-'))
    return RunTemplate(root=root, template=None, space=SearchSpace(), code=None, description=description)


def materialise(ref: TemplateRef | None, store: Store, read_config_map: Callable[[str], Mapping[str, Any] | None],
                read_s3: Callable[[str, str], bytes | None]) -> RunTemplate:
    """Unpack the run's template into a private folder, check it, store its tarball."""
    if ref is None:
        raise TemplateProblem("spec.template: absent, so the run is template-free and needs an LLM to write code; "
                              "set spec.llm, or spec.template.configMapRef or s3")
    root = pathlib.Path(tempfile.mkdtemp(prefix='ks-template-'))
    try:
        if ref.config_map is not None:
            config_map = read_config_map(ref.config_map)
            if config_map is None:
                raise TemplateProblem(f"spec.template.configMapRef: no ConfigMap {ref.config_map} in the run's namespace")
            for name, content in files_from_config_map(config_map, ref.config_map).items():
                (root / name).write_bytes(content)
        elif ref.s3_uri is not None:
            url = urllib.parse.urlsplit(ref.s3_uri)
            data = read_s3(url.netloc, url.path.lstrip('/'))
            if data is None:
                raise TemplateProblem(f"spec.template.s3.uri: {ref.s3_uri} does not exist")
            try:
                unpack(data, root)
            except TransferError as err:
                raise TemplateProblem(f"spec.template.s3.uri: {ref.s3_uri}: {err}") from None
        else:
            raise TemplateProblem("spec.template.path: a local folder works in local mode only; in a cluster use "
                                  "spec.template.configMapRef or spec.template.s3")
        try:
            template = load_template(root)
        except TemplateError as err:
            raise TemplateProblem(f"spec.template: {str(err).replace(str(root), 'the template')}") from None
        code = store_code(pack(root), store)
        return RunTemplate(root=root, template=template, space=search_space_of(template), code=code)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
