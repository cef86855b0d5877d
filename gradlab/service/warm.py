"""Imported once by the forkserver `gradlab serve` starts for its local workers: checks two small built-in specs, so
that every worker forked from it starts warm.

A check in a freshly forked worker pays first-call costs that a long-lived process pays once (torch's and numpy's
dispatch caches, pydantic's validators, gradlab's own tables): the 13 shipped specs took 89 ms on average in a
fresh worker against 49 ms in one forked from a forkserver that had checked them once. torch runs on one thread
here, so that the forkserver starts no thread pool a forked worker would inherit half-made (each worker sets its
own thread count, gradlab.executors._ProcessState). Nothing here may fail the server: any error is dropped.
GRADLAB_SERVE_WARM=0 leaves it out.
"""

from __future__ import annotations

import os

from ..usercode import WATCHDOG_THREAD

SPECS = {
    "warm-mlp.yaml": """name: warm-mlp
seed: 0
input: {dim: 3, batch: 4}
target: {kind: regression}
network:
  layers:
    - {type: dense, units: 4}
    - {type: activation, fn: tanh}
    - {type: dense, units: 4}
    - {type: activation, fn: sigmoid}
    - {type: dense, units: 2}
loss: {fn: mse}
""",
    "warm-classifier.yaml": """name: warm-classifier
seed: 0
input: {dim: 3, batch: 4}
target: {kind: onehot, classes: 3}
network:
  layers:
    - {type: dense, units: 4}
    - {type: activation, fn: relu}
    - {type: dense, units: 3}
    - {type: activation, fn: softmax}
loss: {fn: cross_entropy}
""",
}


def warm() -> None:
    if os.environ.get("GRADLAB_SERVE_WARM", "").strip() == "0":
        return
    try:
        import torch

        torch.set_num_threads(1)
        from ..executors import check_spec_text

        for name, text in SPECS.items():
            check_spec_text(name, text, {"devices": ["cpu"]}, 60, allow_code=False)
    except BaseException:  # noqa: BLE001 - a cold worker is slower, never wrong
        pass
    import threading

    # Threads the checks left (none expected) end before the first fork. The deadlines' watchdog never ends and is
    # not waited for: it only waits on its condition, and a forked worker starts its own (usercode._Watchdog).
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.name != WATCHDOG_THREAD:
            thread.join(timeout=1.0)


warm()
