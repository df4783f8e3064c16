"""Thin `dpglow` subcommands: argument parsing and printing only; the work is elsewhere."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from glow_engine.errors import UserError

T = TypeVar("T")


def argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type=` from an engine check: its UserError becomes argparse's one-line
    usage error, so the command line and the window refuse a value with the same words."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert
