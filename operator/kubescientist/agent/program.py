"""The files of an LLM-written node program, for the adapter to write into the node's code folder.

Template-free, the program is one ``experiment.py`` plus a generated native-template manifest, so the
data side runs it like any native template (``--out_dir`` and ``--config``) and checks its metrics.json.
With a template, the template's files stay and the entrypoint is replaced.
"""

from __future__ import annotations

import json

from kubescientist.agent.context import TemplateCode
from kubescientist.core.journal import NodeConfig

ENTRYPOINT = "experiment.py"
"""The template-free program's file name."""
MANIFEST = "kubescientist.yaml"
"""The native-template manifest's file name (the data side's ``experiment_runtime.template.MANIFEST``)."""


def program_files(config: NodeConfig, template: TemplateCode | None, description: str = "") -> dict[str, str]:
    """Relative path -> text of the files to write over the template (or into an empty folder).

    Empty when the node runs the template unchanged. Raises ``ValueError`` for a template-free node
    without code: such a node cannot run.
    """
    if template is not None:
        return {} if config.code is None else {template.entrypoint: config.code}
    if config.code is None:
        raise ValueError("template-free node without code: nothing to run")
    # JSON is YAML: the manifest needs no YAML writer.
    manifest = {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ExperimentTemplate", "name": "llm-program",
                "description": description[:2000], "entrypoint": ENTRYPOINT}
    return {ENTRYPOINT: config.code, MANIFEST: json.dumps(manifest, indent=2) + "\n"}
