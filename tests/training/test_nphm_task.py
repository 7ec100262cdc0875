"""``nphmkit train nphm``: the NPHM auto-decoder on the runner (synthetic or user samples, torchrun, outputs)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from nphmkit.cli import main
from nphmkit.nphm import NPHM
from nphmkit.training.nphm_task import SyntheticShapes, synthetic_samples
from nphmkit.training.samples import load_samples, save_samples
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def samples_file(tmp_path_factory):
    samples = synthetic_samples(SyntheticShapes(identities=2, expressions=2, surface=200, near=200, space=60))
    return save_samples(samples, tmp_path_factory.mktemp("samples") / "s.safetensors")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)


def test_train_nphm_writes_weights_and_codes(samples_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "nphm", "--config", "tiny", "--set", f"data={samples_file}", "-o", str(run), "--quiet"]) == 0
    model = NPHM.load(run / "weights")
    assert model.metadata["trained_by"] == "nphmkit train nphm"
    codes = load_file(str(run / "codes.safetensors"))
    assert codes["z_id"].shape == (2, model.config.id_dim) and codes["z_ex"].shape == (4, model.config.lat_dim_ex)
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert float(rows[-1]["loss"]) < 0.9 * float(rows[0]["loss"])
    # the learned codes describe their shapes: |sdf| at training surface points beats the mean code's
    s = load_samples(samples_file)
    with torch.no_grad():
        own = model.sdf(s.surface[:, :100], codes["z_id"][s.identity_index], codes["z_ex"]).abs().mean()
        zero = model.sdf(s.surface[:, :100], torch.zeros_like(codes["z_id"][s.identity_index]),
                         torch.zeros_like(codes["z_ex"])).abs().mean()
    assert float(own) < float(zero)


def test_two_processes_compute_the_steps_of_one(samples_file, tmp_path):
    args = ["train", "nphm", "--config", "tiny", "--set", f"data={samples_file}", "--set", "run.steps=4", "--quiet"]
    one = _cli("-m", "nphmkit", *args, "-o", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = _cli("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "nphmkit", *args,
               "-o", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    for name in ("weights/weights.safetensors", "codes.safetensors"):
        a, b = load_file(str(tmp_path / "one" / name)), load_file(str(tmp_path / "two" / name))
        for k in a:
            assert_close(b[k].double(), a[k].double(), atol=2e-5, rtol=0, msg=k)


def test_samples_files_are_checked(samples_file, tmp_path, capsys):
    tensors = load_file(str(samples_file))
    del tensors["near_sdf"]
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad))
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    cases = [(bad, "lacks the samples field(s) ['near_sdf']"), (tmp_path / "junk.safetensors", "not a readable"),
             (tmp_path / "none.safetensors", "no such file")]
    for path, message in cases:
        assert main(["train", "nphm", "--config", "tiny", "--set", f"data={path}", "-o", str(tmp_path / "r"),
                     "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r" / "weights").exists()
