"""``--weights small|DIR`` or ``--checkpoint CKPT --anchors NPY``: the decoder a command runs, and its provenance."""

from __future__ import annotations

import argparse

from nphmkit.cli._common import CliError, file_sha256, input_file


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="an nphmkit weight folder, or a shipped name: 'small' (the small NPHM, "
                                          "trained on synthetic heads only)")
    parser.add_argument("--checkpoint", help="official MonoNPHM checkpoint_epoch_*.tar (with --anchors)")
    parser.add_argument("--anchors", help="official anchors_65.npy (with --checkpoint)")


def check_model_flags(args: argparse.Namespace) -> dict:
    """Check the model flags before any work; returns the provenance record of the weights."""
    from nphmkit.pretrained import weights_folder, weights_sha256

    if args.weights and (args.checkpoint or args.anchors):
        raise CliError("give either --weights or --checkpoint with --anchors, not both")
    if args.weights:
        try:
            folder = weights_folder(args.weights)
        except FileNotFoundError as err:
            raise CliError(f"--weights: {err}".replace("weights: ", "", 1)) from None
        if not (folder / "config.json").is_file():
            raise CliError(f"--weights: {folder} is not an nphmkit weight folder (no config.json)")
        return {"weights": args.weights, "folder": str(folder), "sha256": weights_sha256(folder)}
    if not args.checkpoint or not args.anchors:
        raise CliError("give --weights small|DIR (an nphmkit weight folder) or both --checkpoint and --anchors")
    ckpt, anchors = input_file("--checkpoint", args.checkpoint), input_file("--anchors", args.anchors)
    return {"checkpoint": str(ckpt), "checkpoint_sha256": file_sha256(ckpt),
            "anchors": str(anchors), "anchors_sha256": file_sha256(anchors)}


def load_model(args: argparse.Namespace):
    """The decoder of checked flags (:func:`check_model_flags`), in eval mode on ``args.device``."""
    from nphmkit.nphm import NPHM, load_mononphm
    from nphmkit.pretrained import weights_folder

    try:
        if args.weights:
            model = NPHM.load(weights_folder(args.weights), map_location=args.device)
        else:
            model = load_mononphm(args.checkpoint, args.anchors).to(args.device)
    except (ValueError, KeyError) as err:
        flag = "--weights" if args.weights else "--checkpoint"
        raise CliError(f"{flag}: {err}") from None
    return model.eval().requires_grad_(False)
