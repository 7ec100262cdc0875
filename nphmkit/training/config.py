"""Typed training configs: dataclasses, loaded from YAML/JSON or a preset, overridden from the command line.

Configs are plain (nested) dataclasses; :func:`load_config` merges, in order, the dataclass
defaults, a preset or a file, and ``key.sub=value`` overrides (``--set optim.lr=3e-4``), checking
every key and type (OmegaConf, the ``train`` extra: ``pip install 'nphmkit[train]'``).
:func:`save_config` writes the resolved config as ``config.yaml`` into a run folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from nphmkit._optional import require

T = TypeVar("T")


def load_config(
    cls: type[T],
    source: str | os.PathLike | Mapping | None = None,
    overrides: Sequence[str] = (),
    presets: Mapping[str, Callable[[], T]] | None = None,
) -> T:
    """A ``cls`` instance from defaults <- ``source`` <- ``overrides``.

    Args:
        cls: a dataclass type (nested dataclasses allowed).
        source: None (defaults), a preset name (a key of ``presets``), a ``.yaml``/``.yml``/``.json``
            file, or a mapping.
        overrides: ``"a.b=value"`` strings, values in YAML syntax (``3e-4``, ``true``, ``[1, 2]``).

    Raises ``ValueError`` naming the key or file for unknown keys, wrong types or unreadable files.
    """
    omegaconf = require("omegaconf", "training configs")
    OmegaConf = omegaconf.OmegaConf
    base = OmegaConf.structured(cls)
    layers = []
    if isinstance(source, Mapping):
        layers.append(OmegaConf.create(dict(source)))
    elif source is not None:
        name = str(source)
        if presets and name in presets:
            layers.append(OmegaConf.structured(presets[name]()))
        else:
            path = Path(name)
            if path.suffix.lower() not in (".yaml", ".yml", ".json"):
                known = f"; presets: {', '.join(presets)}" if presets else ""
                raise ValueError(f"config: expected a .yaml/.json file or a preset name, got {name!r}{known}")
            if not path.is_file():
                raise FileNotFoundError(f"config: no such file: {path}")
            try:
                layers.append(OmegaConf.load(path))
            except Exception as err:  # noqa: BLE001 - a parse error of any kind, reported in one line
                raise ValueError(f"config: could not read {path}: {str(err).splitlines()[0]}") from None
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    try:
        merged = OmegaConf.merge(base, *layers)
        return OmegaConf.to_object(merged)
    except omegaconf.errors.OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        for item in overrides if not key else ():  # a failed merge of a whole section names no key: find it
            try:
                OmegaConf.merge(base, OmegaConf.from_dotlist([item]))
            except omegaconf.errors.OmegaConfBaseException:
                key = item.split("=", 1)[0].strip()
                break
        message = str(err).splitlines()[0]
        raise ValueError(f"config: {key + ': ' if key else ''}{message}") from None


def config_dict(config: Any) -> dict:
    """A dataclass config as plain nested dicts and lists (tuples become lists)."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def save_config(config: Any, run_dir: str | os.PathLike) -> Path:
    """Write the resolved config as ``run_dir/config.yaml`` (atomically)."""
    from nphmkit._io import write_text

    OmegaConf = require("omegaconf", "training configs").OmegaConf
    path = Path(run_dir) / "config.yaml"
    write_text(path, OmegaConf.to_yaml(OmegaConf.create(config_dict(config))))
    return path
