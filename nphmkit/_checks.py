"""Input checks at public boundaries: errors name the argument, the expected and the actual value."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_tensor(
    name: str,
    value: object,
    shape: Sequence[int | str | None],
    *,
    floating: bool = True,
    finite: bool = False,
) -> torch.Tensor:
    """Check that ``value`` is a tensor of the given shape.

    ``shape`` entries: an int (exact size), a string (a named size, only shown in messages) or
    None (any size); one ``...`` stands for any number of sizes. Returns the tensor unchanged.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {_fmt(shape)}, got {type(value).__name__}")
    if not _matches(tuple(shape), tuple(value.shape)):
        raise ValueError(f"{name}: expected shape {_fmt(shape)}, got {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
    if finite and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return value


def check_same(name: str, expected: object, actual: object, what: str) -> None:
    if expected != actual:
        raise ValueError(f"{name}: expected {what} {expected}, got {actual}")


def _matches(shape: tuple, actual: tuple) -> bool:
    if Ellipsis in shape:
        i = shape.index(Ellipsis)
        head, tail = shape[:i], shape[i + 1 :]
        if len(actual) < len(head) + len(tail):
            return False
        return _matches(head, actual[: len(head)]) and _matches(tail, actual[len(actual) - len(tail) :])
    return len(actual) == len(shape) and all(not isinstance(s, int) or s == a for s, a in zip(shape, actual))


def _fmt(shape: Sequence[int | str | None]) -> str:
    return "(" + ", ".join("?" if s is None else "..." if s is Ellipsis else str(s) for s in shape) + ")"
