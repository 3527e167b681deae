"""Suite-wide rules: root-only tests, and no silent skips under `make test`.

`make test` sets KUBESCIENTIST_STRICT_TESTS=1: there every test must run, so a test that would skip because a
tool is missing (helm, promtool, texlive, the control plane) fails with the skip's reason instead. A green
run must not hide a missing install step. Only `root_only` tests may skip, when the runner is not root.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

STRICT = os.environ.get("KUBESCIENTIST_STRICT_TESTS") == "1"
REAL_MODEL = os.environ.get("KUBESCIENTIST_REALMODEL") == "1"
"""Set by `make realmodel-test`: only then are the real-model tests collected (they take many minutes)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root_only(reason): needs a root runner; skipped otherwise, even when strict")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Deselected, not skipped: `make test` runs strict, where a skip fails, and the tier is its own target.
    if not REAL_MODEL:
        kept = [item for item in items if item.get_closest_marker("realmodel") is None]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[item for item in items if item not in kept])
            items[:] = kept


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("root_only")
    if marker is not None and os.geteuid() != 0:
        pytest.skip(f"root only: {marker.args[0] if marker.args else 'needs a root runner'}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    expected_failure = hasattr(report, "wasxfail")
    if STRICT and report.skipped and not expected_failure and item.get_closest_marker("root_only") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under KUBESCIENTIST_STRICT_TESTS=1 (make test), where every test must run: {reason}"
