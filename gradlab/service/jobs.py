"""What a worker process runs for the service: kept apart from the queue, so that unpickling a job in a fresh
worker imports this small module and gradlab.executors, not SQLAlchemy and the service's tables."""

from __future__ import annotations

import os

WORKER_NICENESS = 10  # a check yields the CPU to the web process: the API answers while every worker is busy


def check_below_the_api(name: str, text: str, options: dict, timeout: float, *, allow_code: bool, nice: bool = True):
    """gradlab.executors.check_spec_text at a lower CPU priority than the server's.

    `nice` only where the process is the job's own (the local pool): a Ray worker process outlives its task."""
    from ..executors import check_spec_text

    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICENESS)
        except (AttributeError, OSError):  # Windows; or a worker already lower than that
            pass
    return check_spec_text(name, text, options, timeout, allow_code=allow_code)


def worker_environment() -> dict:
    """Versions and devices where the checks run (a worker's machine: with Ray, a cluster node), without the
    spec hashes; asked once at start-up, so that the web process never imports torch."""
    from ..environment import environment

    return {k: v for k, v in environment([]).items() if k != "specs"}
