"""The one error type for user mistakes; the CLI prints it and exits with code 2."""

from __future__ import annotations


class GradlabError(Exception):
    """A usage error with a message meant for the user (no traceback)."""


class TargetError(GradlabError):
    """A user op (`audit`, `compare`, a spec's impl:) cannot be loaded or does not follow its contract (exit code 2)."""


class SpecError(GradlabError):
    def __init__(self, file: str, path: str, message: str, *, more: int = 0):
        self.file, self.path, self.message, self.more = file, path, message, more
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(f"{file}: {path}: {message}{extra}")

    def __reduce__(self):  # pickled across a process boundary (a supervised pytest item, an executor's worker)
        return _spec_error, (self.file, self.path, self.message, self.more)


def _spec_error(file: str, path: str, message: str, more: int) -> SpecError:
    return SpecError(file, path, message, more=more)
