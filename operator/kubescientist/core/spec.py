"""The typed model of a ResearchRun's spec, shared by the local runner and the operator.

Instances are built from a manifest dict that has already been validated against the CRD schema and
had its defaults applied (see ``kubescientist.adapters.manifest``), so construction here trusts shapes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

DATASETS_ROOT = "/mnt/datasets"
"""Where a dataset without a mountPath is seen: ``/mnt/datasets/<name>``."""

StageName = Literal["initial", "tuning", "research", "ablation"]
STAGE_NAMES: tuple[StageName, ...] = ("initial", "tuning", "research", "ablation")
Direction = Literal["maximize", "minimize"]
StructuredMode = Literal["auto", "json_schema", "json_object", "prompt"]
STRUCTURED_MODES: tuple[StructuredMode, ...] = ("auto", "json_schema", "json_object", "prompt")
LLM_BOUNDS: Mapping[str, tuple[int, int]] = {
    "timeoutSeconds": (1, 3600), "maxOutputTokens": (16, 1_000_000), "temperature": (0, 2),
    "answerAttempts": (1, 10)}
"""Inclusive bounds of spec.llm's numeric knobs (the CRD states the same)."""
Action = Literal["draft", "debug", "improve", "tune", "variant", "ablate", "seed"]


@dataclasses.dataclass(frozen=True)
class InlineIdea:
    title: str
    """A short title of the research idea."""
    hypothesis: str = ""
    """The claim the run sets out to test."""
    description: str = ""
    """Free text (markdown): motivation, the planned experiments, risks."""


@dataclasses.dataclass(frozen=True)
class IdeaRef:
    inline: InlineIdea | None = None
    """The idea written in the manifest itself."""
    ideas_file: tuple[str, str] | None = None
    """``(path, name)``: an entry of an ideas JSON file written by ``kubescientist ideas``."""
    config_map: tuple[str, str] | None = None
    """``(name, key)``: a ConfigMap holding the idea (in-cluster)."""


@dataclasses.dataclass(frozen=True)
class TemplateRef:
    path: str | None = None
    """A local folder, relative to the manifest's folder."""
    config_map: str | None = None
    """The name of a ConfigMap holding the template's files (in-cluster)."""
    s3_uri: str | None = None
    """An ``s3://`` URI of a content-addressed tarball of the template."""
    args: tuple[str, ...] = ()
    """Extra command-line arguments of the program, after those its kubescientist.yaml declares."""


@dataclasses.dataclass(frozen=True)
class Objective:
    metric: str
    """The metric name the search optimises, as reported in ``metrics.json``."""
    direction: Direction = "maximize"
    """Whether larger or smaller values are better."""
    aggregation: Literal["mean", "min", "max"] = "mean"
    """How the metric's values over several datasets fold into one number."""
    datasets: tuple[str, ...] = ()
    """The datasets that count; empty means every dataset the program reports."""
    value: Literal["final", "best"] = "final"
    """Whether the final value or the best value seen during training is compared."""


@dataclasses.dataclass(frozen=True)
class StageSpec:
    name: StageName
    """Which of the four stages this is."""
    max_nodes: int
    """How many search nodes the stage may create (seed re-evaluations not included)."""
    goal: str = ""
    """What the stage should achieve, in words (given to the LLM agent)."""


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    parallelism: int = 2
    """How many nodes run at once."""
    drafts: int = 2
    """How many independent first implementations stage 1 starts from."""
    debug_probability: float = 0.5
    """The chance that a free slot debugs a buggy leaf instead of expanding the best node."""
    max_debug_depth: int = 3
    """The longest chain of consecutive debug attempts on one branch."""
    seed_candidates: int = 2
    """How many of a stage's leading nodes (by their own run) are re-evaluated with ``seeds`` seeds before
    the stage's best is chosen by seed mean; 1 picks the best by its own run, as one lucky seed may."""


@dataclasses.dataclass(frozen=True)
class Resources:
    gpus: int = 0
    """GPUs per node pod (``nvidia.com/gpu``)."""
    cpu: str = "1"
    """CPU per node, as a Kubernetes quantity."""
    memory: str = "4Gi"
    """Memory per node, as a Kubernetes quantity; locally the limit of its process tree's cgroup (where root)."""
    deadline_seconds: int = 600
    """Wall-clock limit of one node's program, enforced outside the program."""
    network: bool = False
    """Whether a node's program may use the network; locally False means loopback only."""
    gpu_type: str | None = None
    """The GPU model (node label ``nvidia.com/gpu.product``) node pods need; None means any."""
    gpu_memory: str | None = None
    """Least memory per GPU (node label ``nvidia.com/gpu.memory``, in MiB), as a quantity; None means any."""


@dataclasses.dataclass(frozen=True)
class Budget:
    wall_clock_seconds: int | None = None
    """Stop starting new nodes once the run has taken this long."""
    max_total_nodes: int | None = None
    """Stop starting new nodes once this many exist, seed re-evaluations included."""


@dataclasses.dataclass(frozen=True)
class LLMSettings:
    base_url: str | None = None
    """An OpenAI-compatible endpoint; absent means offline (no LLM)."""
    models: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The model per role: ideation, code, feedback, vision, writeup, review."""
    secret_ref: tuple[str, str] | None = None
    """``(name, key)`` of the Secret holding the API key."""
    max_tokens: int | None = None
    """Stop new LLM work past this many tokens."""
    max_cost_usd: float | None = None
    """Stop new LLM work past this cost."""
    timeout_seconds: float | None = None
    """How long one request may take; None keeps the client's default."""
    max_output_tokens: int | None = None
    """The completion-length limit sent with each request; None sends none."""
    temperature: float | None = None
    """Sampling temperature for every role; None leaves the server's default."""
    structured_outputs: StructuredMode = "auto"
    """How JSON answers are asked for: ``auto``, ``json_schema``, ``json_object`` or ``prompt``."""
    answer_attempts: int = 3
    """Answers asked for per call before it counts as unusable (the first one and its repairs)."""


@dataclasses.dataclass(frozen=True)
class Runtime:
    image: str | None = None
    """The node pods' image; None means the chart's node image."""
    image_pull_policy: str | None = None
    """Always, IfNotPresent or Never; None means the Kubernetes default."""
    requirements: tuple[str, ...] = ()
    """Python requirements beyond the template's requirements.txt."""
    env: tuple[tuple[str, str], ...] = ()
    """Plain ``(name, value)`` environment variables of the node programs."""
    shm_size: str | None = None
    """Size of the programs' /dev/shm (memory), as a quantity; None keeps the default of each place."""
    ephemeral_storage: str | None = None
    """Disk a program may fill (work dir and /tmp), as a quantity; None keeps the default (2Gi locally)."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    """Unique in the run."""
    mount_path: str
    """Where the program sees the data, read-only."""
    claim_name: str | None = None
    """A PersistentVolumeClaim of the run's namespace (in-cluster)."""
    s3_uri: str | None = None
    """``s3://bucket/prefix`` of the run's object store, fetched into the pod (in-cluster)."""
    config_map: str | None = None
    """A ConfigMap of the run's namespace, each key a file (in-cluster)."""
    max_bytes: str = "10Gi"
    """Most bytes an ``s3_uri`` dataset may fetch, as a quantity."""
    path: str | None = None
    """A local folder, relative to the manifest's folder (local mode)."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    idea: IdeaRef
    """The research idea."""
    objective: Objective
    """What the search optimises."""
    stages: tuple[StageSpec, ...]
    """The four stages, in order."""
    template: TemplateRef | None = None
    """The experiment template; None means template-free (code written by the LLM)."""
    search: SearchSettings = SearchSettings()
    """Tree-search knobs."""
    resources: Resources = Resources()
    """Per-node resources and deadline."""
    seeds: int = 3
    """Extra seeds each stage's best node is re-run with (0 turns re-evaluation off)."""
    budget: Budget = Budget()
    """Run-wide limits."""
    llm: LLMSettings = LLMSettings()
    """LLM endpoint and models."""
    writeup: bool = True
    """Whether a paper is written when the search ends."""
    review: bool = True
    """Whether the paper is reviewed."""
    reviewers: int = 3
    """How many reviews the ensemble writes."""
    seed: int = 0
    """The run seed: every random choice of the search derives from it."""
    suspend: bool = False
    """No new nodes start while set."""
    runtime: Runtime = Runtime()
    """The node programs' image, packages and environment variables."""
    datasets: tuple[Dataset, ...] = ()
    """Data mounted read-only into every node."""
    gates: tuple[StageName, ...] = ()
    """Stages after which the run waits for a person's approval before the next stage starts."""
    approved_gates: tuple[StageName, ...] = ()
    """Gated stages approved to go on."""
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """The validated, defaulted spec as a dict (storage, scheduling pass-through and the like)."""

    def stage(self, name: StageName) -> StageSpec:
        return next(s for s in self.stages if s.name == name)


@dataclasses.dataclass(frozen=True)
class ResearchRun:
    name: str
    """``metadata.name``."""
    namespace: str
    """``metadata.namespace`` (``default`` locally)."""
    spec: RunSpec
    """The spec."""


def _pair(obj: Mapping[str, Any] | None, first: str, second: str) -> tuple[str, str] | None:
    return None if obj is None else (str(obj[first]), str(obj.get(second, "")))


def run_spec_from_dict(spec: Mapping[str, Any]) -> RunSpec:
    """Build the model from a validated, defaulted ``spec`` dict."""
    idea = spec["idea"]
    inline = idea.get("inline")
    template = spec.get("template")
    objective = spec["objective"]
    search = spec.get("search", {})
    resources = spec.get("resources", {})
    budget = spec.get("budget", {})
    llm = spec.get("llm", {})
    return RunSpec(
        idea=IdeaRef(
            inline=None if inline is None else InlineIdea(
                title=inline["title"], hypothesis=inline.get("hypothesis", ""),
                description=inline.get("description", "")),
            ideas_file=_pair(idea.get("ideasFile"), "path", "name"),
            config_map=_pair(idea.get("configMapRef"), "name", "key"),
        ),
        template=None if template is None else TemplateRef(
            path=template.get("path"),
            config_map=(template.get("configMapRef") or {}).get("name"),
            s3_uri=(template.get("s3") or {}).get("uri"),
            args=tuple(str(a) for a in template.get("args", ())),
        ),
        objective=Objective(
            metric=objective["metric"], direction=objective.get("direction", "maximize"),
            aggregation=objective.get("aggregation", "mean"),
            datasets=tuple(objective.get("datasets", ())), value=objective.get("value", "final"),
        ),
        stages=tuple(StageSpec(name=s["name"], max_nodes=int(s["maxNodes"]), goal=s.get("goal", ""))
                     for s in spec["stages"]),
        search=SearchSettings(
            parallelism=int(search.get("parallelism", 2)), drafts=int(search.get("drafts", 2)),
            debug_probability=float(search.get("debugProbability", 0.5)),
            max_debug_depth=int(search.get("maxDebugDepth", 3)),
            seed_candidates=int(search.get("seedCandidates", 2)),
        ),
        resources=Resources(
            gpus=int(resources.get("gpus", 0)), cpu=str(resources.get("cpu", "1")),
            memory=str(resources.get("memory", "4Gi")),
            deadline_seconds=int(resources.get("deadlineSeconds", 600)),
            network=bool(resources.get("network", False)),
            gpu_type=_text(resources.get("gpuType")), gpu_memory=_text(resources.get("gpuMemory")),
        ),
        seeds=int(spec.get("seeds", 3)),
        budget=Budget(wall_clock_seconds=budget.get("wallClockSeconds"),
                      max_total_nodes=budget.get("maxTotalNodes")),
        llm=llm_settings(llm),
        writeup=bool(spec.get("writeup", {}).get("enabled", True)),
        review=bool(spec.get("review", {}).get("enabled", True)),
        reviewers=int(spec.get("review", {}).get("reviewers", 3)),
        seed=int(spec.get("seed", 0)),
        suspend=bool(spec.get("suspend", False)),
        runtime=_runtime(spec.get("runtime", {})),
        datasets=tuple(_dataset(d) for d in spec.get("datasets", ())),
        gates=tuple(spec.get("gates", ())),
        approved_gates=tuple(spec.get("approvedGates", ())),
        raw=spec,
    )


class SpecError(ValueError):
    """A spec value is out of range; the message names the field."""


def _number(llm: Mapping[str, Any], field: str, kind: type) -> Any:
    value = llm.get(field)
    if value is None:
        return None
    low, high = LLM_BOUNDS[field]
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or
                                                                                   float(value).is_integer())
    if not ok_type or not low <= value <= high:
        what = "an integer" if kind is int else "a number"
        raise SpecError(f"spec.llm.{field}: must be {what} from {low:d} to {high:d}, got {value!r}")
    return kind(value)


def llm_settings(llm: Mapping[str, Any]) -> LLMSettings:
    """``spec.llm`` as settings; raises ``SpecError`` naming the field for a value out of range (the CRD
    checks the same, but a dict may come from elsewhere, such as a resumed run's saved manifest)."""
    mode = llm.get("structuredOutputs", "auto")
    if mode not in STRUCTURED_MODES:
        raise SpecError(f"spec.llm.structuredOutputs: must be one of {', '.join(STRUCTURED_MODES)}, got {mode!r}")
    attempts = _number(llm, "answerAttempts", int)
    return LLMSettings(
        base_url=llm.get("baseURL"), models=dict(llm.get("models", {})),
        secret_ref=_pair(llm.get("secretRef"), "name", "key"),
        max_tokens=llm.get("maxTokens"), max_cost_usd=llm.get("maxCostUSD"),
        timeout_seconds=_number(llm, "timeoutSeconds", float),
        max_output_tokens=_number(llm, "maxOutputTokens", int),
        temperature=_number(llm, "temperature", float),
        structured_outputs=mode, answer_attempts=3 if attempts is None else attempts)


def _runtime(runtime: Mapping[str, Any]) -> Runtime:
    return Runtime(image=runtime.get("image"), image_pull_policy=runtime.get("imagePullPolicy"),
                   requirements=tuple(str(r) for r in runtime.get("requirements", ())),
                   env=tuple((str(e["name"]), str(e["value"])) for e in runtime.get("env", ())),
                   shm_size=_text(runtime.get("shmSize")), ephemeral_storage=_text(runtime.get("ephemeralStorage")))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _dataset(entry: Mapping[str, Any]) -> Dataset:
    s3 = entry.get("s3") or {}
    return Dataset(name=entry["name"], mount_path=entry.get("mountPath") or f"{DATASETS_ROOT}/{entry['name']}",
                   claim_name=(entry.get("persistentVolumeClaim") or {}).get("claimName"), s3_uri=s3.get("uri"),
                   config_map=(entry.get("configMap") or {}).get("name"), max_bytes=str(s3.get("maxSize", "10Gi")),
                   path=entry.get("path"))


def spec_problems(spec: Mapping[str, Any]) -> list[str]:
    """What the CRD schema cannot say about a spec, one line per problem, each naming its field.

    Duplicate names, which the apiserver refuses through list-map keys but a schema validator does not,
    and two datasets seen at the same path.
    """
    problems = []
    runtime = spec.get("runtime") or {}
    seen: set[str] = set()
    for index, entry in enumerate(runtime.get("env", ())):
        if entry.get("name") in seen:
            problems.append(f"spec.runtime.env[{index}].name: duplicate variable {entry['name']!r}")
        seen.add(entry.get("name"))
    names: set[str] = set()
    paths: dict[str, str] = {}
    for index, entry in enumerate(spec.get("datasets", ())):
        dataset = _dataset(entry)
        if dataset.name in names:
            problems.append(f"spec.datasets[{index}].name: duplicate dataset {dataset.name!r}")
        names.add(dataset.name)
        for other_path, other in paths.items():
            if (dataset.mount_path + "/").startswith(other_path + "/") or \
                    (other_path + "/").startswith(dataset.mount_path + "/"):
                problems.append(f"spec.datasets[{index}].mountPath: {dataset.mount_path} overlaps dataset "
                                f"{other!r} at {other_path}")
        paths[dataset.mount_path] = dataset.name
    return problems
