"""Exceptions for bad user input: the CLI prints their message as one line and exits non-zero."""


class InputError(ValueError):
    """A file, option or value given by the user is unusable; the message names it."""
