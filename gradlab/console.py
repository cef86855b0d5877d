"""The `gradlab` console script (and `python -m gradlab`): the click command in a supervised child (supervise.py).

The top of the import graph: it alone imports both the command line (cli.py) and the supervisor."""

from __future__ import annotations

import os
import sys

from .supervise import _exit_code, _finish, _fork, _private_stdout, _state, _supervise, enabled


def main() -> None:
    """The `gradlab` console script: run the click command in a supervised child."""
    if not enabled():
        from .cli import main as cli_main

        cli_main(prog_name="gradlab")
        return
    pid, end, crumb = _fork()
    if pid == 0:
        _child(end, crumb)  # never returns
    os._exit(_supervise(pid, end, crumb))


def _child(record_fd: int, crumb) -> None:
    _state.update(crumb=crumb, record_fd=record_fd)
    code = 3
    try:
        _private_stdout()
        from .cli import main as cli_main

        try:
            cli_main(prog_name="gradlab", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except KeyboardInterrupt:
            code = 130
    except BaseException as exc:  # noqa: BLE001 -- the supervisor must get a record whatever happened here
        try:
            sys.stderr.write(f"Error: internal error of gradlab ({type(exc).__name__}: {str(exc)[:200]}); this is a bug: report it\n")
        except BaseException:  # noqa: BLE001
            pass
        code = 3
    _finish(record_fd, code)
