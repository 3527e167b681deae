"""Kubernetes resource quantities (``4Gi``, ``500m``, ``1e3``) as numbers."""

from __future__ import annotations

import decimal
import re

# A plain decimal number; an exponent is allowed only without a suffix ("1e3", not "1e3Gi").
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")
_NUMBER_WITH_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

_MAX_DIGITS = 30
"""Decimal exponents beyond this are refused: far past int64 (19 digits) and nano (10^-9)."""

_SUFFIXES: dict[str, int | decimal.Decimal] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": decimal.Decimal("1e-9"), "u": decimal.Decimal("1e-6"), "m": decimal.Decimal("1e-3"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}


def parse_quantity(text: str | int | float) -> decimal.Decimal:
    """Parse a quantity; raises ``ValueError`` naming the text when it is not one."""
    raw = str(text).strip()
    # Two-letter binary suffixes first, so "Mi" is not read as "M" followed by garbage.
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if raw.endswith(suffix) and raw[: -len(suffix)]:
            number, factor = raw[: -len(suffix)], decimal.Decimal(_SUFFIXES[suffix])
            break
    else:
        number, factor = raw, decimal.Decimal(1)
    pattern = _NUMBER if factor != 1 or number != raw else _NUMBER_WITH_EXPONENT
    if not pattern.match(number):
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    try:
        mantissa = decimal.Decimal(number)
        # Kubernetes quantities are at most about 2^63; checked before multiplying, which would overflow.
        if mantissa and mantissa.adjusted() > _MAX_DIGITS:
            raise ValueError(f"{text!r} is too large for a Kubernetes quantity")
        if mantissa and mantissa.adjusted() < -_MAX_DIGITS:
            raise ValueError(f"{text!r} is too small to be anything but zero")
        value = mantissa * factor
    except decimal.DecimalException:
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not a non-negative quantity")
    return value


def mebibytes_up(text: str | int | float) -> int:
    """A quantity in whole MiB, rounded up (``40Gi`` is 40960; ``1G`` is 954)."""
    value = parse_quantity(text)
    whole, rest = divmod(value, 2**20)
    return int(whole) + (1 if rest else 0)
