"""Read torch checkpoints that pickle foreign objects (OmegaConf configs, Lightning state) without running their code.

``torch.load(weights_only=True)`` refuses such files. :func:`load_checkpoint` instead unpickles
with a restricted unpickler: tensors, storages and plain containers are rebuilt as usual;
every other class becomes an inert :class:`Stub` that only records the state it was given.
Nothing from the file is imported or called except the allow-listed torch rebuild functions.
:func:`plain` turns stubs of OmegaConf containers back into dicts and lists.
"""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path
from typing import Any

import torch

_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
}
_STORAGES = {
    "FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
    "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
}


class Stub:
    """Stands in for an object of a class that is not allow-listed; keeps its pickled state."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"Stub({self.qualname})"

    # objects pickled through __reduce__ with extra items (dicts, lists) land here
    def __setitem__(self, key: Any, value: Any) -> None:
        self.kwargs[key] = value

    def append(self, value: Any) -> None:
        self.args = (*self.args, value)

    def extend(self, values: Any) -> None:
        self.args = (*self.args, *values)


def _stub_class(module: str, name: str) -> type:
    return type(name, (Stub,), {"qualname": f"{module}.{name}"})


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGES:
            return getattr(torch, name)
        return _stub_class(module, name)


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` needs: a restricted ``Unpickler`` and ``load``."""

    Unpickler = _Unpickler
    __name__ = "nphmkit_safe_pickle"

    @staticmethod
    def load(file, **kwargs):
        return _Unpickler(file, **kwargs).load()


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a torch checkpoint, turning every non-allow-listed object into a :class:`Stub`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {path}")
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PickleModule)


def plain(obj: Any) -> Any:
    """Stubs of OmegaConf ``DictConfig``/``ListConfig``/nodes -> dicts, lists and values; other stubs -> None."""
    if isinstance(obj, Stub):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "_content" in state:
            return plain(state["_content"])
        if "_val" in state:
            return plain(state["_val"])
        return None
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
