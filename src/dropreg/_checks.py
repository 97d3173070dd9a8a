"""Argument validation shared by every module: one message format, one place.

Each check returns the value converted to a plain Python type, or raises ``TypeError`` (wrong type)
or ``ValueError`` (right type, out of range) with a message that names the argument and the allowed
range. Nothing is clipped.

Example:
    >>> check_probability("p", 0.25)
    0.25
    >>> check_int("width", 3)
    3
    >>> check_probability("p", 1.0, allow_one=False)
    Traceback (most recent call last):
    ...
    ValueError: p must be in [0, 1), got 1.0
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["check_probability", "check_int", "check_float_dtype"]


def check_probability(name: str, value: object, *, allow_one: bool = True) -> float:
    """``value`` as a float in ``[0, 1]`` (or ``[0, 1)`` with ``allow_one=False``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {value!r}")
    v = float(value)
    hi_ok = v <= 1.0 if allow_one else v < 1.0
    if not (v >= 0.0 and hi_ok):
        rng = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return v


def check_int(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools are refused; numpy integers are accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return v


def check_float_dtype(dtype: object, name: str = "dtype") -> torch.dtype:
    """``dtype`` when it is a floating-point ``torch.dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point torch.dtype, got {dtype!r}")
    return dtype
