"""Files gradlab writes are written whole or not at all.

Each file goes to a temporary file in the same folder and is renamed into place (`os.replace`
is atomic on POSIX and Windows): a full disk, `ulimit -f`, Ctrl-C or a crash leaves the
previous file as it was, and two runs writing the same path never splice their documents.
Where a file goes is checked before any work starts, so an unwritable path costs nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import GradlabError


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_writable(path: str, option: str = "--output") -> None:
    """Fail now, with the option's name, if `path` cannot be written later."""
    target = Path(path)
    if target.is_dir():
        raise GradlabError(f"{path}: {option}: is a directory; name a file")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise GradlabError(f"{path}: {option}: cannot write here ({_reason(exc)})") from None


def write_atomic(path: str, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder; raise GradlabError on failure."""
    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode(target))
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise GradlabError(f"{path}: cannot write: {_reason(exc)}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_text(text: str, path: str | None) -> None:
    """To stdout when `path` is None, else to a file written whole."""
    if path is None:
        import click

        click.echo(text)
    else:
        write_atomic(path, text)


def write_report_text(text: str, path: str | None) -> None:
    """A command's text report: to stdout, or to a file written whole with its last line (the verdict) echoed."""
    import click

    write_text(text, path)
    if path is not None:
        click.echo(text.splitlines()[-1] if text.strip() else "")


def _mode(target: Path) -> int:
    """Keep an existing file's permissions; a new file gets what open() would give it (0o666 less the umask)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
