"""A correct Swish whose forward or backward misbehaves as GRADLAB_TEST_HOSTILE says (tests/test_supervision.py).

Each mode is something user code can do to the process running it; none may change gradlab's verdict.
"""

import os
import sys

import numpy as np

MODE = os.environ.get("GRADLAB_TEST_HOSTILE", "")
WRONG = float(os.environ.get("GRADLAB_TEST_WRONG", "1.0"))  # a factor on the backward: 1.0 is correct


def _misbehave():
    if MODE == "everything":  # every way of writing to gradlab's stdout or holding the process, at once
        os.write(1, b"JUNK ON FD 1\n")
        os.system("echo JUNK FROM A SHELL")
        print("JUNK FROM PRINT")
        import threading
        import time

        threading.Thread(target=time.sleep, args=(3600,)).start()
        sys.stdout.close()
        return
    if MODE == "exit0":
        os._exit(0)
    if MODE == "exit3":
        os._exit(3)
    if MODE == "write_fd1":
        os.write(1, b"JUNK ON FD 1\n")
    if MODE == "system_echo":
        os.system("echo JUNK FROM A SHELL")
    if MODE == "print":
        print("JUNK FROM PRINT")
    if MODE == "close_stdout":
        sys.stdout.close()
    if MODE == "thread":
        import threading
        import time

        threading.Thread(target=time.sleep, args=(3600,)).start()  # non-daemon: would keep Python alive
    if MODE == "kill_self":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class Swish:
    def forward(self, z):
        if os.environ.get("GRADLAB_TEST_WHERE", "forward") == "forward":
            _misbehave()
        return z / (1.0 + np.exp(-z))

    def backward(self, z, grad_out):
        if os.environ.get("GRADLAB_TEST_WHERE") == "backward":
            _misbehave()
        s = 1.0 / (1.0 + np.exp(-z))
        return grad_out * (s + z * s * (1.0 - s)) * WRONG

    def torch_forward(self, z):
        import torch

        return z * torch.sigmoid(z)


class Interrupting(Swish):
    """A backward that raises KeyboardInterrupt itself (not a Ctrl-C)."""

    def backward(self, z, grad_out):
        raise KeyboardInterrupt


if MODE == "atexit":
    import atexit

    atexit.register(os._exit, 0)  # after gradlab printed its verdict: must not turn it into a pass
