"""Exceptions shared by all parts."""


class ClinclipError(Exception):
    """A user-facing error (bad input file, wrong column, bad config value). The message must say
    which file, row or field is wrong and what was expected."""
