"""The one error type for user mistakes; the CLI prints it and exits with code 2."""

from __future__ import annotations


class GradlabError(Exception):
    """A usage error with a message meant for the user (no traceback)."""


class SpecError(GradlabError):
    def __init__(self, file: str, path: str, message: str, *, more: int = 0):
        self.file, self.path, self.message, self.more = file, path, message, more
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(f"{file}: {path}: {message}{extra}")
