"""The data side of kubescientist: what runs a node's program, inside its pod or locally.

Depends on the standard library, psutil and pyyaml only, and never on `kubescientist`.
"""

from experiment_runtime.limits import Limits
from experiment_runtime.metrics import (
    Curve,
    Metrics,
    MetricsError,
    MetricValue,
    from_final_info,
    parse_metrics,
    read_metrics,
)
from experiment_runtime.node import code_hash, run_node
from experiment_runtime.result import RESULT_FILE, NodeResult, NodeStatus, load_result, parse_result
from experiment_runtime.sandbox import Execution, SandboxError, execute, prepare_workdir
from experiment_runtime.template import (
    Hyperparameter,
    ParamSet,
    SearchSpace,
    Template,
    TemplateError,
    command_for,
    load_template,
)

__all__ = [
    "RESULT_FILE",
    "Curve",
    "Execution",
    "Hyperparameter",
    "Limits",
    "MetricValue",
    "Metrics",
    "MetricsError",
    "NodeResult",
    "NodeStatus",
    "ParamSet",
    "SandboxError",
    "SearchSpace",
    "Template",
    "TemplateError",
    "code_hash",
    "command_for",
    "execute",
    "from_final_info",
    "load_result",
    "parse_result",
    "load_template",
    "parse_metrics",
    "prepare_workdir",
    "read_metrics",
    "run_node",
]
