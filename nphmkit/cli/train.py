"""``nphmkit train predictor``: train on a dataset folder; under ``torchrun`` on several processes."""

from __future__ import annotations

import argparse
import os
import time

from nphmkit.cli._common import CliError, input_path, output_folder, progress, say

TASKS = ("predictor",)


def add_parser(sub, parents) -> None:
    p = sub.add_parser("train", parents=parents, help="train a part (the dense predictor) on a dataset folder",
                       description="Train on a dataset folder (docs/contracts.md 'Datasets'). Launch with "
                                   "`torchrun --nproc_per_node N -m nphmkit train ...` for N processes.")
    p.add_argument("task", choices=TASKS, help="what to train")
    p.add_argument("--config", default="small", help="a preset (small, tiny) or a .yaml/.json file (default small)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set run.lr=3e-4 --set data=out/synth (repeatable)")
    p.add_argument("-o", "--output", required=True, help="run folder (config.yaml, log.csv, checkpoints/, weights/)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's newest checkpoint")
    p.add_argument("--device", default=None, help="cpu or cuda (overrides run.device)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nphmkit.training.config import load_config, save_config
    from nphmkit.training.predictor import PRESETS, PredictorTask, PredictorTrainConfig

    overrides = list(args.overrides) + ([f"run.device={args.device}"] if args.device else [])
    try:
        cfg = load_config(PredictorTrainConfig, args.config, overrides, presets=PRESETS)
    except FileNotFoundError as err:
        raise CliError(f"--config: {err}") from None
    input_path("data (--set data=...)", cfg.data)
    main = int(os.environ.get("RANK", "0")) == 0
    run_dir = output_folder(args, "-o/--output", args.output) if main else args.output
    if main:
        save_config(cfg, run_dir)
    say(args, f"loading {cfg.data} ...")
    task = PredictorTask(cfg)
    from nphmkit.training.runner import train

    start = time.perf_counter()
    say(args, f"training the {cfg.preset} predictor on {len(task)} images for {cfg.run.steps} steps into {run_dir}")
    train(task, cfg.run, run_dir, resume=args.resume, progress=progress(args) if main else False)
    if main:
        print(f"wrote {run_dir}/weights (log.csv, loss.png, checkpoints/) in {time.perf_counter() - start:.0f} s")
    return 0
