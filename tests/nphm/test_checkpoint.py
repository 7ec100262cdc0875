"""Loading official checkpoints and nphmkit weight folders: strict, safe, clear errors."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from nphmkit import NPHM, NPHMConfig
from nphmkit.nphm.checkpoint import infer_config, load_mononphm, nphmkit_to_official
from tests.helpers import assert_close
from tests.nphm.cases import make_inputs, make_model


def _official_file(tmp_path, model: NPHM, mutate=None):
    state = nphmkit_to_official(model)
    if mutate:
        mutate(state)
    path = tmp_path / "checkpoint_epoch_10.tar"
    torch.save({**state, "epoch": 10}, path)
    anchors = tmp_path / "anchors.npy"
    np.save(anchors, model.mean_anchors.numpy())
    return path, anchors


@pytest.mark.parametrize("config", [NPHMConfig.tiny(), NPHMConfig.small()], ids=["tiny", "small"])
def test_official_layout_round_trip_reproduces_reference(tmp_path, config):
    model = make_model(config, seed=4)
    path, anchors = _official_file(tmp_path, model)
    loaded = load_mononphm(path, anchors)
    assert dataclasses.replace(loaded.config, chunk_size=config.chunk_size) == config
    x, z_id, z_ex = make_inputs(model, 2, 17)
    with torch.no_grad():
        assert_close(loaded.sdf(x, z_id, z_ex, backend="torch"), model.sdf(x, z_id, z_ex, backend="reference"))


def test_infer_config_reads_official_sizes():
    model = NPHM(NPHMConfig.mononphm())
    state = nphmkit_to_official(model)
    assert infer_config(state["id_decoder"], state["ex_decoder"]) == NPHMConfig.mononphm()
    assert len(state["id_decoder"]) == 36 * 10 + 6 and len(state["ex_decoder"]) == 16


def test_colour_branch_is_skipped_and_unknown_keys_are_errors(tmp_path):
    model = make_model()

    def add_colour(state):
        state["id_decoder"]["aggr_app.layers.0.layers.0.weight"] = torch.zeros(3, 3)
        state["id_decoder"]["communcation_bottleneck1.weight"] = torch.zeros(16, 16)

    path, anchors = _official_file(tmp_path, model, add_colour)
    load_mononphm(path, anchors)  # colour branch present: fine

    def add_unknown(state):
        state["id_decoder"]["something_else.weight"] = torch.zeros(2)

    path, anchors = _official_file(tmp_path, model, add_unknown)
    with pytest.raises(ValueError, match="something_else.weight"):
        load_mononphm(path, anchors)


def test_missing_and_misshapen_tensors_are_named(tmp_path):
    model = make_model()

    def drop(state):
        del state["id_decoder"]["deepSDFensemble.layers.3.layers.2.bias"]

    path, anchors = _official_file(tmp_path, model, drop)
    with pytest.raises(ValueError, match=r"layers\.3\.layers\.2\.bias"):
        load_mononphm(path, anchors)

    def reshape(state):
        state["ex_decoder"]["defDeepSDF.lin1.weight"] = torch.zeros(7, 7)

    path, anchors = _official_file(tmp_path, model, reshape)
    with pytest.raises(ValueError, match=r"expression\.layers\.1\.weight"):
        load_mononphm(path, anchors, config=model.config)


def test_wrong_files_give_clear_errors(tmp_path):
    model = make_model()
    path, anchors = _official_file(tmp_path, model)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        load_mononphm(tmp_path / "nope.tar", anchors)
    np.save(tmp_path / "bad_anchors.npy", np.zeros((10, 3)))
    with pytest.raises(ValueError, match="anchors: expected 65 anchors"):
        load_mononphm(path, tmp_path / "bad_anchors.npy")
    torch.save({"model": {}}, tmp_path / "other.tar")
    with pytest.raises(ValueError, match="id_decoder"):
        load_mononphm(tmp_path / "other.tar", anchors)


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.tar"
    with open(path, "wb") as fh:
        pickle.dump({"id_decoder": _Evil(), "ex_decoder": {}}, fh)
    with pytest.raises(ValueError, match="weights_only"):
        load_mononphm(path, np.zeros((65, 3)))
    assert "pickled code ran" not in capsys.readouterr().out


def test_weight_folder_round_trip_is_exact_and_strict(tmp_path):
    model = make_model(NPHMConfig.small(), seed=2)
    model.metadata = {"trained_on": "nothing (random test weights)"}
    folder = model.save(tmp_path / "w")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.safetensors"]
    loaded = NPHM.load(folder)
    assert loaded.config == model.config and loaded.metadata == model.metadata
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "weights.safetensors"))
    tensors.pop("expression.compressor.bias")
    save_file(tensors, str(folder / "weights.safetensors"))
    with pytest.raises(ValueError, match="expression.compressor.bias"):
        NPHM.load(folder)
    with pytest.raises(FileNotFoundError, match="config.json"):
        NPHM.load(tmp_path / "empty")
