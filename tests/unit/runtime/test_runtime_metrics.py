"""The metrics contract: metrics.json and v1 final_info.json, validated with precise error paths."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from experiment_runtime import MetricsError, from_final_info, parse_metrics, read_metrics
from experiment_runtime.metrics import MAX_CURVE_POINTS, Metrics


def test_full_metrics_parse_and_normalize() -> None:
    data = {
        "schema": "kubescientist.io/metrics/v1",
        "datasets": {
            "mod97": {"val_acc": {"final": 1, "best": 1.0, "direction": "maximize", "stderr": 0.0}},
            "shakespeare": {"val_loss": {"final": 1.47, "curve": {"step": [0, 5], "value": [4.2, 1.47]}}},
        },
    }

    metrics = parse_metrics(data)

    acc = metrics.datasets["mod97"]["val_acc"]
    assert (acc.final, acc.best, acc.direction, acc.stderr) == (1.0, 1.0, "maximize", 0.0)
    assert isinstance(acc.final, float)
    loss = metrics.datasets["shakespeare"]["val_loss"]
    assert loss.best == 1.47 and loss.direction is None and loss.curve is not None
    assert loss.curve.step == (0, 5) and loss.curve.value == (4.2, 1.47)
    assert metrics.to_json() == {
        "schema": "kubescientist.io/metrics/v1",
        "datasets": {
            "mod97": {"val_acc": {"final": 1.0, "best": 1.0, "direction": "maximize", "stderr": 0.0}},
            "shakespeare": {"val_loss": {"final": 1.47, "best": 1.47, "curve": {"step": [0, 5], "value": [4.2, 1.47]}}},
        },
    }
    assert parse_metrics(metrics.to_json()) == metrics  # the normalized form is valid input
    assert metrics.finals() == {"mod97": {"val_acc": 1.0}, "shakespeare": {"val_loss": 1.47}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "metrics.json: must be an object, got a list"),
        ({"datasets": {}}, "metrics.json: datasets: must not be empty"),
        ({"datasets": {"mod97": {}}}, "metrics.json: datasets.mod97: must not be empty"),
        ({"datasets": {"mod97": {"acc": 0.9}}}, "metrics.json: datasets.mod97.acc: must be an object, got a number"),
        ({"datasets": {"mod97": {"acc": {"best": 0.9}}}}, "metrics.json: datasets.mod97.acc.final: is required"),
        (
            {"datasets": {"mod97": {"acc": {"final": math.inf}}}},
            "metrics.json: datasets.mod97.acc.final: must be a finite number, got inf",
        ),
        (
            {"datasets": {"mod97": {"acc": {"final": True}}}},
            "metrics.json: datasets.mod97.acc.final: must be a finite number, got true",
        ),
        (
            {"datasets": {"mod97": {"acc": {"final": None}}}},
            "metrics.json: datasets.mod97.acc.final: must be a finite number, got null",
        ),
        (
            {"datasets": {"mod97": {"acc": {"final": 1, "best": math.nan}}}},
            "metrics.json: datasets.mod97.acc.best: must be a finite number, got nan",
        ),
        (
            {"datasets": {"mod97": {"acc": {"final": 1, "fianl": 1}}}},
            "metrics.json: datasets.mod97.acc.fianl: unknown key"
            " (expected one of final, best, direction, stderr, curve)",
        ),
        (
            {"datasets": {"mod97": {"acc": {"final": 1, "direction": "up"}}}},
            "metrics.json: datasets.mod97.acc.direction: must be 'maximize' or 'minimize', got 'up'",
        ),
        (
            {"datasets": {"mod97": {"acc": {"final": 1, "stderr": -0.1}}}},
            "metrics.json: datasets.mod97.acc.stderr: must be >= 0, got -0.1",
        ),
        (
            {"datasets": {"mod97": {"acc": {"final": 1, "curve": {"step": [0, 1.5], "value": [1, 2]}}}}},
            "metrics.json: datasets.mod97.acc.curve.step[1]: must be an integer, got 1.5",
        ),
        (
            {"datasets": {"mod97": {"acc": {"final": 1, "curve": {"step": [0], "value": ["a"]}}}}},
            'metrics.json: datasets.mod97.acc.curve.value[0]: must be a finite number, got "a"',
        ),
        (
            {"datasets": {"mod97": {"acc": {"final": 1, "curve": {"value": [1]}}}}},
            "metrics.json: datasets.mod97.acc.curve.step: must be a list, got null",
        ),
        (
            {"schema": "v0", "datasets": {"d": {"m": {"final": 1}}}},
            "metrics.json: schema: must be 'kubescientist.io/metrics/v1', got 'v0'",
        ),
    ],
)
def test_invalid_metrics_name_the_path(data: object, message: str) -> None:
    with pytest.raises(MetricsError) as caught:
        parse_metrics(data)
    assert str(caught.value) == message


def test_long_curves_are_thinned_keeping_the_ends() -> None:
    steps = list(range(5000))
    data = {"datasets": {"d": {"loss": {"final": 0.0, "curve": {"step": steps, "value": [float(s) for s in steps]}}}}}

    curve = parse_metrics(data).datasets["d"]["loss"].curve

    assert curve is not None
    assert len(curve.step) == MAX_CURVE_POINTS
    assert curve.step[0] == 0 and curve.step[-1] == 4999
    assert list(curve.step) == sorted(curve.step)
    assert curve.value == tuple(float(s) for s in curve.step)


def test_final_info_from_ai_scientist_v1() -> None:
    data = {
        "x_div_y": {
            "means": {"final_val_acc_mean": 0.98, "step_val_acc_99_mean": 4120},
            "stderrs": {"final_val_acc_stderr": 0.01},
            "final_info_dict": {"final_val_acc": [0.97, 0.99]},
        },
        "permutation": {"means": {"final_val_acc": 0.4}, "stderrs": {"final_val_acc": 0.05}},
    }

    metrics = from_final_info(data)

    assert metrics.source == "final_info.json"
    acc = metrics.datasets["x_div_y"]["final_val_acc_mean"]
    assert (acc.final, acc.best, acc.stderr, acc.direction) == (0.98, 0.98, 0.01, None)
    assert metrics.datasets["x_div_y"]["step_val_acc_99_mean"].stderr is None
    assert metrics.datasets["permutation"]["final_val_acc"].stderr == 0.05
    assert metrics.to_json()["datasets"]["x_div_y"]["final_val_acc_mean"] == {
        "final": 0.98,
        "best": 0.98,
        "stderr": 0.01,
    }


def test_final_info_with_nested_means_is_flattened_into_named_metrics() -> None:
    data = {
        "model": {
            "means": {"layer_0": {"acc": 0.9, "probe": {"r2": 0.5}}, "layer_1": {"acc": 0.8},
                      "loss": [0.3, 0.1, 0.2], "name": "resnet", "ok": True, "none": None, "empty": [],
                      "mixed": [1, "x"], "inf": 1e400},
            "stderrs": {"layer_0": {"acc": 0.01}, "layer_1.acc": 0.02},
        },
    }

    metrics = from_final_info(data)

    model = metrics.datasets["model"]
    assert list(model) == ["layer_0.acc", "layer_0.probe.r2", "layer_1.acc", "loss"]
    assert (model["layer_0.acc"].final, model["layer_0.acc"].stderr) == (0.9, 0.01)
    assert model["layer_1.acc"].stderr == 0.02  # a flat dotted key in stderrs
    assert model["layer_0.probe.r2"].stderr is None
    # A list in means is averaged; no stderr is made up from it (it may be a curve, not repeats).
    assert model["loss"].final == pytest.approx(0.2) and model["loss"].stderr is None
    assert metrics.notes == (
        'model.means.name: skipped ("resnet", not a number)',
        "model.means.ok: skipped (true, not a number)",
        "model.means.none: skipped (null, not a number)",
        "model.means.empty: skipped (an empty list)",
        "model.means.mixed: skipped (a list not only of numbers)",
        "model.means.inf: skipped (inf, not a number)",
    )
    # The notes travel with the normalized form, which reads back as it was.
    assert parse_metrics(metrics.to_json()) == Metrics(datasets=metrics.datasets, source="metrics.json",
                                                       notes=metrics.notes)


def test_final_info_dict_alone_gives_per_seed_means_and_stderrs() -> None:
    data = {"shakespeare": {"final_info_dict": {"val_loss": [1.0, 2.0, 3.0], "best": {"iter": [10, 20]}}},
            "enwik8": {"means": {"val_loss_mean": 1.5}, "final_info_dict": {"val_loss": [1.0, 2.0]}}}

    metrics = from_final_info(data)

    loss = metrics.datasets["shakespeare"]["val_loss"]
    assert loss.final == 2.0 and loss.stderr == pytest.approx(math.sqrt(1.0 / 3))
    assert metrics.datasets["shakespeare"]["best.iter"].final == 15.0
    # Beside means, final_info_dict is ignored.
    assert list(metrics.datasets["enwik8"]) == ["val_loss_mean"] and metrics.notes == ()


def test_metrics_notes_must_be_strings() -> None:
    with pytest.raises(MetricsError, match="^metrics.json: notes: must be a list of strings$"):
        parse_metrics({"datasets": {"d": {"m": {"final": 1}}}, "notes": [1]})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "final_info.json: must not be empty"),
        ({"d": {"stderrs": {}}}, "final_info.json: d.means: is required (or final_info_dict)"),
        (
            {"d": {"means": {"acc": "high"}}},
            'final_info.json: d.means: holds no number (skipped: d.means.acc: skipped ("high", not a number))',
        ),
        ({"d": {"stderrs": {}}, "e": {}}, "final_info.json: d.means: is required (or final_info_dict)"),
        ({"d": {"means": {"l": {"acc": 1}}, "stderrs": {"l": {"acc": -1}}}},
         "final_info.json: d.stderrs.l.acc: must be >= 0, got -1"),
        (
            {"d": {"means": {"acc_mean": 1}, "stderrs": {"acc_stderr": math.nan}}},
            "final_info.json: d.stderrs.acc_stderr: must be a finite number, got nan",
        ),
    ],
)
def test_invalid_final_info_names_the_path(data: object, message: str) -> None:
    with pytest.raises(MetricsError) as caught:
        from_final_info(data)
    assert str(caught.value) == message


def test_read_metrics_prefers_metrics_json(tmp_path: Path) -> None:
    (tmp_path / "final_info.json").write_text(json.dumps({"d": {"means": {"m": 1}}}))
    assert read_metrics(tmp_path).source == "final_info.json"

    (tmp_path / "metrics.json").write_text(json.dumps({"datasets": {"d": {"m": {"final": 2}}}}))
    metrics = read_metrics(tmp_path)

    assert metrics.source == "metrics.json" and metrics.datasets["d"]["m"].final == 2.0


def test_read_metrics_refuses_what_is_not_a_plain_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "metrics.json")
    with pytest.raises(MetricsError, match=r"^metrics\.json: must be a regular file$"):
        read_metrics(tmp_path)

    with pytest.raises(MetricsError, match=r"^no metrics\.json or final_info\.json in out_dir$"):
        read_metrics(tmp_path / "missing")
