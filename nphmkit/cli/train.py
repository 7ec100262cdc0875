"""``nphmkit train predictor|nphm``: train a part by the one runner; under ``torchrun`` on several processes."""

from __future__ import annotations

import argparse
import os
import time

from nphmkit.cli._common import CliError, input_path, output_folder, progress, say

TASKS = ("predictor", "nphm", "regressor")


def add_parser(sub, parents) -> None:
    p = sub.add_parser("train", parents=parents, help="train a part: dense predictor, NPHM auto-decoder, regressor",
                       description="Train the dense predictor or the Pix2NPHM regressor on a dataset folder "
                                   "(docs/contracts.md 'Datasets'), or an NPHM auto-decoder on shape samples "
                                   "(synthetic or a samples file). Launch with `torchrun --nproc_per_node N -m "
                                   "nphmkit train ...` for N processes.")
    p.add_argument("task", choices=TASKS, help="what to train: predictor (image -> maps), nphm (the head model) or regressor "
                        "(image -> codes and pose, reading a frozen predictor)")
    p.add_argument("--config", default="small", help="a preset (small, tiny) or a .yaml/.json file (default small)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set run.lr=3e-4 --set data=out/synth (repeatable); "
                        "nphm: data=synthetic (default) or a samples .safetensors file")
    p.add_argument("-o", "--output", required=True, help="run folder (config.yaml, log.csv, checkpoints/, weights/)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's newest checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a run folder that holds a run (its checkpoints, log and weights are deleted "
                        "first); without it or --resume such a folder is refused")
    p.add_argument("--device", default=None, help="cpu or cuda (overrides run.device)")
    p.set_defaults(run=run)


def _config(args: argparse.Namespace):
    from nphmkit.training.config import load_config

    if args.task == "predictor":
        from nphmkit.training.predictor import PRESETS
        from nphmkit.training.predictor import PredictorTrainConfig as Config
    elif args.task == "regressor":
        from nphmkit.training.regressor import PRESETS
        from nphmkit.training.regressor import RegressorTrainConfig as Config
    else:
        from nphmkit.training.nphm_task import PRESETS
        from nphmkit.training.nphm_task import NPHMTrainConfig as Config
    overrides = list(args.overrides) + ([f"run.device={args.device}"] if args.device else [])
    try:
        return load_config(Config, args.config, overrides, presets=PRESETS)
    except FileNotFoundError as err:
        raise CliError(f"--config: {err}") from None


def _task(args: argparse.Namespace, cfg, run_dir, main: bool):
    """The task of ``args.task`` (its data read and checked) and the words that say what it trains."""
    if args.task == "predictor":
        from nphmkit.training.predictor import PredictorTask

        return PredictorTask(cfg), f"the {cfg.preset} predictor on {{n}} images"
    if args.task == "regressor":
        from nphmkit.training.regressor import RegressorTask

        task = RegressorTask(cfg, progress=progress(args) if main else False)
        return task, f"the regressor (reading {cfg.predictor}, codes of {cfg.model}) on {{n}} images"
    from nphmkit.training.nphm_task import NPHMTask

    task = NPHMTask(cfg, cache=os.path.join(run_dir, "samples.safetensors"), progress=progress(args) if main else False)
    return task, f"the {cfg.preset} NPHM on {{n}} shapes"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nphmkit.training.config import save_config
    from nphmkit.training.runner import prepare_run_dir

    cfg = _config(args)
    if args.task != "nphm" or cfg.data != "synthetic":
        input_path("data (--set data=...)", cfg.data)
    main = int(os.environ.get("RANK", "0")) == 0
    # refused or cleared before any data is read (the NPHM's synthetic samples are cached in the folder)
    prepare_run_dir(Path(args.output).expanduser(), cfg.run.steps, args.resume, args.overwrite, main,
                    also=("samples.safetensors", "codes.safetensors", "config.yaml"))
    existed = Path(args.output).expanduser().exists()
    run_dir = output_folder(args, "-o/--output", args.output) if main else args.output
    say(args, f"loading {cfg.data} ...")
    try:
        task, what = _task(args, cfg, run_dir, main)
    except BaseException:
        if main and not existed:  # bad data: leave no half-made run folder behind
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if main:
        save_config(cfg, run_dir)
    from nphmkit.training.runner import train

    start = time.perf_counter()
    say(args, f"training {what.format(n=len(task))} for {cfg.run.steps} steps into {run_dir}")
    train(task, cfg.run, run_dir, resume=args.resume, progress=progress(args) if main else False,
          overwrite=args.overwrite)
    if main:
        print(f"wrote {run_dir}/weights (log.csv, loss.png, checkpoints/) in {time.perf_counter() - start:.0f} s")
    return 0
