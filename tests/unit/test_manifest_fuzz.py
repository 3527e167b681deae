"""Fuzzed manifests against `kubescientist validate`: no traceback, no hang, every refusal says where.

Two generators: the quickstart manifest with fields replaced by hostile values (integers past int64,
non-finite and tiny numbers, quantity strings that overflow or round to zero, deep nesting, wrong
types), and raw files (arbitrary bytes, YAML alias bombs, duplicate keys, deep flow collections). Each
file either validates or is refused with lines that all start with the file's name, then a field path
or what is wrong with the file.
"""

from __future__ import annotations

import copy
import pathlib
import re
import tempfile
import time
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubescientist.adapters.manifest import ManifestError, load_run

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUICKSTART = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
BOUND_SECONDS = 5.0
"""The longest any one manifest may take to validate or refuse."""

FIELD = re.compile(r"(apiVersion|kind|metadata|spec|status)[.\[:]")
FILE_PROBLEMS = ("cannot read", "not a regular file", "larger than", "not UTF-8 text", "not valid YAML",
                 "the document is not a mapping")

FUZZ = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the manifest, to a mapping value or a list item."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


PATHS = _paths(QUICKSTART)

hostile_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e400", "0.0000001", "1e999999999999", "1e-999999", "9" * 400, "4Gi", "0", "-1", "500m",
                     "1Ei", "999999999Ei", "0.000000001n", "", "\x00", "a" * 5000, "1e3Gi", "+.5"]),
    st.text(max_size=40),
    st.booleans(),
    st.none(),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


def _check(text: bytes | str) -> None:
    """Validates the file; asserts the outcome is a result or a refusal naming a field or the file's problem."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "fuzz.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogatepass"))
        started = time.monotonic()
        try:
            load_run(path)
        except ManifestError as err:
            lines = str(err).splitlines()
            assert lines, "an empty refusal"
            for line in lines:
                assert line.startswith(f"{path}: "), line
                rest = line[len(f"{path}: "):]
                assert FIELD.match(rest) or rest.startswith(FILE_PROBLEMS), line
        assert time.monotonic() - started < BOUND_SECONDS


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS), hostile_values | st.just(_deep(200))), min_size=1, max_size=3))
def test_fuzzed_fields_are_refused_by_name(replacements: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc = copy.deepcopy(QUICKSTART)
    for path, value in replacements:
        try:
            _set(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed the path
    _check(yaml.safe_dump(doc, allow_unicode=True))


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

raw_files = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=2000),
    st.sampled_from([
        ALIAS_BOMB,
        "apiVersion: a\napiVersion: b\n",
        "[" * 5000 + "]" * 5000,
        "{a: " * 3000 + "1" + "}" * 3000,
        "- " * 3000 + "x",
        "spec: !!python/object:os.system {}\n",
        "? [a, b]\n: c\n",
        "1: 2\n",
        "spec: {seed: 2018-01-01}\n",
        "\ufeffkind: ResearchRun\n",
        "x" * (2 << 20),
    ]),
    st.builds(lambda doc, junk: yaml.safe_dump(doc) + junk, st.just(QUICKSTART), st.text(max_size=200)),
)


@FUZZ
@given(raw_files)
def test_fuzzed_files_never_crash_or_hang(text: bytes | str) -> None:
    _check(text)


def test_the_unfuzzed_quickstart_is_valid() -> None:
    # The generators start from a valid manifest: a refusal must come from what they changed.
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "ok.yaml"
        path.write_text(yaml.safe_dump(QUICKSTART))
        run, _ = load_run(path)
    assert run.name == "quickstart"
