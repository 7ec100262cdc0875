"""The kernels' weight layouts, built once per set of weights instead of once per chunk of points.

Both designs read the network weights in their own layouts (stacked, transposed, zero-padded).
Building them is a few dozen copies (about 45 MB at the official sizes for the registers design),
which the query loop would otherwise repeat for every chunk of points. :func:`cached` keeps the
last layout per owning module and name, and rebuilds it when any parameter it was built from has changed:
a different tensor (``model.to(...)``, a replaced parameter) or an in-place update (optimizer
steps, ``load_state_dict``, ``p.mul_()``; PyTorch counts these in each tensor's version counter).
The cache lives as long as the owning module (weak references) and holds one layout per name. Weights
made under ``torch.inference_mode()`` have no version counter and are not cached.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")
_store: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def _key(p: torch.Tensor) -> tuple:
    return p._version, p.data_ptr(), p.dtype, p.device, tuple(p.shape)


def _fresh(stamp: list, params: list[torch.Tensor]) -> bool:
    """Whether ``stamp`` was taken of these very tensors, unchanged since (a weak reference, not an
    address alone, tells a tensor from a new one allocated where it was)."""
    return len(stamp) == len(params) and all(ref() is p and key == _key(p) for (ref, key), p in zip(stamp, params))


def cached(owner: torch.nn.Module, name: tuple, build: Callable[[], T]) -> T:
    """``build()``'s layouts of ``owner``'s parameters, cached under ``name``.

    ``name`` identifies the layout within ``owner`` (one entry per name: give each padded width
    its own) and must say everything it depends on besides the weights. The layouts must not
    refer to ``owner`` itself, or the cache would keep it alive.
    """
    params = list(owner.parameters())
    if any(p.is_inference() for p in params):  # made under torch.inference_mode(): no version counter to
        with torch.no_grad():  # tell an in-place change by, so no cache
            return build()
    entries = _store.setdefault(owner, {})
    hit = entries.get(name)
    if hit is not None and _fresh(hit[0], params):
        return hit[1]
    with torch.no_grad():
        layouts = build()
    entries[name] = ([(weakref.ref(p), _key(p)) for p in params], layouts)
    return layouts


def clear(owner: torch.nn.Module | None = None) -> None:
    """Forget the cached layouts of ``owner`` and its submodules (everything when ``None``), e.g. to free memory."""
    if owner is None:
        _store.clear()
        return
    for module in owner.modules():
        _store.pop(module, None)
