"""Errors whose message is meant for the user: the CLI prints them without a traceback and
the viewer shows them in a dialog."""


class UserError(Exception):
    """Base of every error with a message fit to show to a user."""
