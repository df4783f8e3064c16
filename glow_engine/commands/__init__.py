"""Thin `dpglow` subcommands: argument parsing and printing only; the work is elsewhere."""
