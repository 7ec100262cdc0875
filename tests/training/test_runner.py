"""The training runner: batches by step, torchrun/DDP equivalence, kill-and-resume, accumulation, configs."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from nphmkit.training.config import load_config, save_config
from nphmkit.training.runner import RunConfig, batch_indices, has_cxx_compiler, train
from tests.helpers import assert_close
from tests.training.toy import ToyTask

TOY = Path(__file__).with_name("toy.py")


def _run(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, **kw)


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), b=st.integers(1, 17), seed=st.integers(0, 99))
def test_each_epoch_visits_every_item_once(n, b, seed):
    steps = -(-3 * n // b)
    stream = torch.cat([batch_indices(s, n, b, seed) for s in range(steps)])
    for e in range(2):
        assert sorted(stream[e * n : (e + 1) * n].tolist()) == list(range(n))
    assert torch.equal(batch_indices(3, n, b, seed), batch_indices(3, n, b, seed))


def test_two_processes_compute_the_steps_of_one(tmp_path):
    """torchrun with 2 gloo processes on the CPU, 4 items each, ends where one process on 8 items does."""
    one = _run([str(TOY), str(tmp_path / "one"), "--steps", "6"])
    assert one.returncode == 0, one.stderr
    two = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(TOY),
                str(tmp_path / "two"), "--steps", "6"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "two" / "world.txt").read_text() == "2" and (tmp_path / "one" / "world.txt").read_text() == "1"
    a, b = load_file(str(tmp_path / "one" / "final.safetensors")), load_file(str(tmp_path / "two" / "final.safetensors"))
    for k in a:
        assert_close(b[k], a[k], atol=2e-6, msg=k)
    assert_close(torch.tensor(_losses(tmp_path / "two")), torch.tensor(_losses(tmp_path / "one")), atol=1e-6)


def test_killed_and_resumed_run_reproduces_the_loss_curve(tmp_path):
    steps = 30
    whole = _run([str(TOY), str(tmp_path / "whole"), "--steps", str(steps)])
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(TOY), str(run), "--steps", str(steps), "--sleep", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "log.csv").is_file() and len(_losses(run)) >= 8):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    stopped_at = len(_losses(run))
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    assert ckpts and int(ckpts[-1].stem.split("_")[1]) == stopped_at < steps
    assert not (run / "final.safetensors").exists()
    resumed = _run([str(TOY), str(run), "--steps", str(steps), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert _losses(run) == pytest.approx(_losses(tmp_path / "whole"), abs=1e-7)
    assert (run / "loss.png").is_file()


def test_a_folder_that_holds_a_run_is_refused_without_resume_or_overwrite(tmp_path):
    cfg = RunConfig(steps=3, batch_size=8, lr=1e-2, log_every=1, checkpoint_every=100)
    torch.set_num_threads(1)
    run = tmp_path / "run"
    (run / "notes").mkdir(parents=True)  # a folder with unrelated files is fine
    train(ToyTask(), cfg, run, progress=False)
    first = (run / "final.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a finished run \(3 steps\); pass --resume"):
        train(ToyTask(), cfg, run, progress=False)
    with pytest.raises(ValueError, match="already holds a run stopped at step 3 of 5"):
        train(ToyTask(), dataclasses.replace(cfg, steps=5), run, progress=False)
    with pytest.raises(ValueError, match="resume and overwrite: pass one"):
        train(ToyTask(), cfg, run, resume=True, overwrite=True, progress=False)
    losses = _losses(run)
    assert (run / "final.safetensors").read_bytes() == first and len(losses) == 3
    train(ToyTask(), dataclasses.replace(cfg, steps=5), run, resume=True, progress=False)  # continued: 3 -> 5
    assert _losses(run)[:3] == losses and len(_losses(run)) == 5
    train(ToyTask(), dataclasses.replace(cfg, steps=2), run, overwrite=True, progress=False)  # started again
    assert len(_losses(run)) == 2 and [p.name for p in (run / "checkpoints").iterdir()] == ["step_0000002.pt"]
    assert (run / "notes").is_dir()
    (run / "checkpoints" / "step_0000002.pt").unlink()  # a log without a checkpoint is an earlier run too
    with pytest.raises(ValueError, match=r"the log of an earlier run \(log.csv\) but no checkpoint"):
        train(ToyTask(), cfg, run, progress=False)


class WiderToy(ToyTask):
    def build_model(self):
        return torch.nn.Sequential(torch.nn.Linear(5, 24), torch.nn.Tanh(), torch.nn.Linear(24, 2))


def test_a_damaged_or_foreign_checkpoint_is_refused_on_resume(tmp_path):
    from nphmkit.training.state import CheckpointError

    cfg = RunConfig(steps=3, batch_size=8, lr=1e-2, log_every=1, checkpoint_every=100)
    torch.set_num_threads(1)
    train(ToyTask(), cfg, tmp_path / "good", progress=False)
    good = (tmp_path / "good" / "checkpoints" / "step_0000003.pt").read_bytes()
    more = dataclasses.replace(cfg, steps=4)
    cases = [
        (good[: len(good) // 2], ToyTask(), "not a readable checkpoint"),  # truncated
        (b"", ToyTask(), "not a readable checkpoint"),
        (b"not a checkpoint" * 8, ToyTask(), "not a readable checkpoint"),
        (good, WiderToy(), r"made for another network than this run's: 3 tensor\(s\) of another shape: 0.weight "
                           r"\(16, 5\) \(expected \(24, 5\)\)"),
    ]
    for k, (data, task, message) in enumerate(cases):
        path = tmp_path / f"r{k}" / "checkpoints" / "step_0000003.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=message) as err:
            train(task, more, tmp_path / f"r{k}", resume=True, progress=False)
        assert str(path) in str(err.value)
    path = tmp_path / "r9" / "checkpoints" / "step_0000003.pt"
    path.parent.mkdir(parents=True)
    torch.save({"step": 3, "model": {}}, path)
    with pytest.raises(CheckpointError, match="not a training checkpoint \\(it has no optimizer, scheduler, rng\\)"):
        train(ToyTask(), more, tmp_path / "r9", resume=True, progress=False)
    train(ToyTask(), more, tmp_path / "good", resume=True, progress=False)  # the undamaged one resumes
    assert len(_losses(tmp_path / "good")) == 4


def test_accumulation_and_bf16(tmp_path):
    cfg = RunConfig(steps=5, batch_size=8, lr=1e-2, log_every=1, checkpoint_every=100)
    torch.set_num_threads(1)
    train(ToyTask(), cfg, tmp_path / "a", progress=False)
    train(ToyTask(), dataclasses.replace(cfg, accumulate=4), tmp_path / "b", progress=False)
    a, b = load_file(str(tmp_path / "a" / "final.safetensors")), load_file(str(tmp_path / "b" / "final.safetensors"))
    for k in a:
        assert_close(b[k], a[k], atol=2e-6, msg=k)
    train(ToyTask(), dataclasses.replace(cfg, precision="bf16"), tmp_path / "c", progress=False)
    losses = _losses(tmp_path / "c")
    assert len(losses) == 5 and all(v == v for v in losses)
    with pytest.raises(ValueError, match="run.batch_size: 8 must divide into 1 process"):
        train(ToyTask(), dataclasses.replace(cfg, accumulate=3), tmp_path / "d")
    with pytest.raises(ValueError, match="run.precision"):
        train(ToyTask(), dataclasses.replace(cfg, precision="fp8"), tmp_path / "d")


def test_the_runner_steps_as_a_plain_adamw_loop(tmp_path):
    """The runner's optimizer (AdamW's fused kernel where it applies) and schedule give the parameters of a plain
    loop: per-tensor AdamW, the same warm-up and cosine factors, the same batches."""
    import math

    cfg = RunConfig(steps=7, batch_size=8, lr=1e-2, weight_decay=0.05, warmup=2, log_every=1, checkpoint_every=100)
    torch.set_num_threads(1)
    train(ToyTask(), cfg, tmp_path / "run", progress=False)
    got = load_file(str(tmp_path / "run" / "final.safetensors"))
    task = ToyTask()
    torch.manual_seed(cfg.seed)
    model = task.build_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    for step in range(cfg.steps):
        factor = (step + 1) / cfg.warmup if step < cfg.warmup else \
            0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / (cfg.steps - cfg.warmup)))
        for group in opt.param_groups:
            group["lr"] = cfg.lr * factor
        opt.zero_grad()
        task.loss(model, task.batch(batch_indices(step, len(task), cfg.batch_size, cfg.seed), step, "cpu"))[0].backward()
        opt.step()
    want = model.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert_close(got[k], want[k], atol=1e-6, msg=k)
    assert max(float((want[k] - start[k]).abs().max()) for k in want) > 1e-3  # the steps moved the parameters


@pytest.mark.skipif(not has_cxx_compiler(), reason="torch.compile on the CPU needs a C++ compiler, and none is on PATH")
def test_compiled_runs_take_the_steps_of_eager_ones(tmp_path):
    """``run.compile`` (the forward through ``torch.compile``) against the eager run, its reference: the same
    parameters and losses up to float rounding, saved under the same names; in one process and under torchrun
    with 2 gloo processes (DDP around the compiled module)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    cfg = RunConfig(steps=6, batch_size=8, lr=1e-2, warmup=2, log_every=1, checkpoint_every=100)
    torch.set_num_threads(1)
    train(ToyTask(), cfg, tmp_path / "eager", progress=False)
    torch._dynamo.reset()
    counters.clear()
    train(ToyTask(), dataclasses.replace(cfg, compile=True), tmp_path / "compiled", progress=False)
    assert counters["stats"]["unique_graphs"] >= 1  # the forward really went through the compiler
    want = load_file(str(tmp_path / "eager" / "final.safetensors"))
    got = load_file(str(tmp_path / "compiled" / "final.safetensors"))
    assert set(got) == set(want)
    for k in want:
        assert_close(got[k], want[k], atol=1e-5, msg=k)
    assert_close(torch.tensor(_losses(tmp_path / "compiled")), torch.tensor(_losses(tmp_path / "eager")), atol=1e-5)
    # toy.py's schedule (warm-up 2, lr 1e-2, batch 8) is cfg's: the same steps again, split over 2 processes
    two = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(TOY),
                str(tmp_path / "two"), "--steps", "6", "--compile"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "two" / "world.txt").read_text() == "2"
    got = load_file(str(tmp_path / "two" / "final.safetensors"))
    for k in want:
        assert_close(got[k], want[k], atol=1e-5, msg=k)


def test_compile_is_refused_by_name(tmp_path, monkeypatch):
    """A non-bool ``run.compile``, or no C++ compiler on the CPU, is refused before the run folder is made."""
    cfg = RunConfig(steps=2, batch_size=8, compile=True)
    with pytest.raises(ValueError, match="run.compile: expected true or false, got 'yes'"):
        train(ToyTask(), dataclasses.replace(cfg, compile="yes"), tmp_path / "bad")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ValueError, match=r"run.compile: torch.compile on the CPU needs a C\+\+ compiler; none of "
                                         r"g\+\+, c\+\+, clang\+\+"):
        train(ToyTask(), cfg, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@dataclasses.dataclass
class _Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)


@dataclasses.dataclass
class _Config:
    name: str = "x"
    optim: _Optim = dataclasses.field(default_factory=_Optim)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)


def test_configs_from_presets_files_and_overrides(tmp_path):
    presets = {"fast": lambda: _Config(name="fast", run=RunConfig(steps=10))}
    cfg = load_config(_Config, "fast", ["optim.lr=3e-4", "run.batch_size=32"], presets=presets)
    assert cfg.name == "fast" and cfg.run.steps == 10 and cfg.optim.lr == 3e-4 and cfg.run.batch_size == 32
    assert isinstance(cfg.run, RunConfig) and cfg.optim.betas == (0.9, 0.99)
    save_config(cfg, tmp_path)
    again = load_config(_Config, tmp_path / "config.yaml")
    assert again == cfg
    (tmp_path / "c.json").write_text('{"optim": {"lr": 0.5}}')
    assert load_config(_Config, tmp_path / "c.json").optim.lr == 0.5
    with pytest.raises(ValueError, match="optim.lrr"):
        load_config(_Config, None, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="run.steps"):
        load_config(_Config, None, ["run.steps=many"])
    with pytest.raises(ValueError, match="--set: expected key=value"):
        load_config(_Config, None, ["optim.lr"])
    with pytest.raises(ValueError, match="config: optim: .*_Optim"):  # a whole section given a number
        load_config(_Config, None, ["run.steps=5", "optim=3"])
    with pytest.raises(ValueError, match="presets: fast"):
        load_config(_Config, "slow", presets=presets)
