"""Kubernetes resource quantities."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kubescientist.core.quantity import mebibytes_up, parse_quantity


@pytest.mark.parametrize("text,expected", [
    ("4Gi", 4 * 2**30),
    ("500m", Decimal("0.5")),
    ("1e3", 1000),
    ("2", 2),
    (2, 2),
    (0.5, Decimal("0.5")),
    ("1.5Gi", 3 * 2**29),
    ("512Mi", 512 * 2**20),
    ("1Ki", 1024),
    ("1Ti", 2**40),
    ("2k", 2000),
    ("3M", 3_000_000),
    ("1G", 10**9),
    ("1E", 10**18),
    ("1E3", 1000),
    ("250u", Decimal("0.00025")),
    ("100n", Decimal("1e-7")),
    (" 8Gi ", 8 * 2**30),
    ("0", 0),
])
def test_parse_quantity(text: str | int | float, expected: int | Decimal) -> None:
    assert parse_quantity(text) == Decimal(expected)


@pytest.mark.parametrize("text", ["bad", "4Gb", "Gi", "m", "", "-1", "-2Gi", "1..5", "NaN", "Infinity", "4GiB", "0x10"])
def test_bad_quantities_raise_value_error_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_quantity(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text, mib", [("40Gi", 40960), ("1Mi", 1), ("1", 1), ("1G", 954), ("81559Mi", 81559),
                                       ("1.5Mi", 2)])
def test_mebibytes_round_up(text: str, mib: int) -> None:
    # A minimum of GPU memory: rounding down would accept a GPU with less than asked for.
    assert mebibytes_up(text) == mib
