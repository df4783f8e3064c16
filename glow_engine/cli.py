"""`dpglow`: the engine's command line. Each subcommand lives in its own module, which
provides `add_arguments(parser)` and `run(args) -> int`; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import NoReturn

from glow_engine import __version__
from glow_engine.errors import UserError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("glow_engine.train", "train a GLOW model (also under torchrun)"),
    "info": ("glow_engine.commands.info", "print a model file's metadata"),
    "calibrate": ("glow_engine.commands.calibrate", "store latent min/max in a model file"),
    "fit-box": ("glow_engine.commands.fit_box",
                "fit DP-GLOW's clip box per budget on training images into a model file"),
    "privatize": ("glow_engine.commands.privatize",
                  "release images with DP-GLOW or ID-LDP (PNG or de-identified DICOM)"),
    "ledger": ("glow_engine.commands.ledger", "privacy budget spent per patient and image"),
    "score": ("glow_engine.commands.score", "anomaly scores of chest X-rays (normal vs mixture)"),
    "pacs": ("glow_engine.commands.pacs",
             "query a PACS, release its chest X-rays to a research PACS or a folder"),
    "evaluate": ("glow_engine.commands.evaluate",
                 "utility, re-identification, marker and flip checks of the mechanisms"),
}


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (`--help` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported, so one subcommand's heavy or
    missing dependencies never slow down or break another."""
    p = _Parser(prog="dpglow", description="DP-GLOW chest X-ray privacy engine")
    p.add_argument("--version", action="version", version=f"dpglow {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            mod = importlib.import_module(module)
            mod.add_arguments(sp)
            sp.set_defaults(_run=mod.run)
    return p


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: object = None, line: str | None = None) -> None:
    """A library's warning that no check turned into an error or a note: one line, like
    every other message, never Python's two lines with a source file and line."""
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with warnings.catch_warnings():  # restores Python's own way when main returns
        warnings.showwarning = _one_line_warning
        return _main(argv)


def _main(argv: list[str]) -> int:
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = build_parser(command).parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return int(e.code or 0)
    try:
        return args._run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file system refusal no check foresaw: still one line
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
