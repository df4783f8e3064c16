"""`dpglow`: the engine's command line. Each subcommand lives in its own module, which
provides `add_arguments(parser)` and `run(args) -> int`; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys

from glow_engine.errors import UserError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("glow_engine.train", "train a GLOW model (also under torchrun)"),
    "info": ("glow_engine.commands.info", "print a model file's metadata"),
    "calibrate": ("glow_engine.commands.calibrate", "store latent min/max in a model file"),
    "privatize": ("glow_engine.commands.privatize",
                  "release images with DP-GLOW or ID-LDP (PNG or de-identified DICOM)"),
    "ledger": ("glow_engine.commands.ledger", "privacy budget spent per patient and image"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpglow", description="DP-GLOW chest X-ray privacy engine")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(module)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
