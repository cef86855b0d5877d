"""What a worker process runs for the service: kept apart from the queue, so that unpickling a job in a fresh
worker imports this small module and gradlab.executors, not SQLAlchemy and the service's tables."""

from __future__ import annotations

import os

WORKER_NICENESS = 10  # a check yields the CPU to the web process: the API answers while every worker is busy


def check_below_the_api(name: str, text: str, options: dict, timeout: float, *, allow_code: bool, nice: bool = True,
                        files: list[tuple[str, str]] | None = None, pickled: bool = False, render: dict | None = None):
    """gradlab.executors.check_spec_text at a lower CPU priority than the server's.

    `nice` only where the process is the job's own (the local pool): a Ray worker process outlives its task.
    `files`: the op files sent with the spec, [(impl path relative to the spec, text)], written where the spec's
    impl: paths look for them, in the spec's private temporary folder. `pickled`: the result as pickle bytes, which
    the web process hands on to its store process without reading them. `render` ({"options", "worker"}: the run's
    options and the workers' environment), for a one-spec run in a warm worker: the run rendered here (render.RunWrite:
    document, rows, reports), which the web process writes as it is: the worker that ran the spec renders its reports."""
    from ..executors import check_spec_text

    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICENESS)
        except (AttributeError, OSError):  # Windows; or a worker already lower than that
            pass
    if files:
        result = _check_with_files(name, text, options, timeout, allow_code=allow_code, files=files)
    else:
        result = check_spec_text(name, text, options, timeout, allow_code=allow_code)
    if render is not None:
        from .render import render_run

        try:
            return render_run([result], [text], render["options"], render["worker"])
        except Exception:  # noqa: BLE001 - the store process renders it, and says what went wrong
            pass
    if pickled:
        import pickle

        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    return result


def _check_with_files(name: str, text: str, options: dict, timeout: float, *, allow_code: bool, files: list[tuple[str, str]]):
    """The spec and its op files in a private temporary folder, laid out as the impl: paths say: a spec whose files
    sit `k` folders up is written `k` folders deep. Every path is checked again here (plain parts, inside the folder)."""
    import tempfile

    from ..batch import error_result
    from ..executors import check_spec_path, plain_name
    from .intake import _Bad, plain_relative

    base = plain_name(name)
    if base is None:
        return error_result(name, f"{name}: (name): expected a spec file name such as net.yaml")
    try:
        paths = [(plain_relative(path, "files"), body) for path, body in files]
    except _Bad as exc:
        return error_result(name, f"{name}: {exc}")
    depth = max((p.split("/").count("..") for p, _ in paths), default=0)
    with tempfile.TemporaryDirectory(prefix="gradlab-spec-") as root:
        folder = os.path.join(root, *[f"up{i}" for i in range(depth)])
        os.makedirs(folder, exist_ok=True)
        spec_path = os.path.join(folder, base)
        for path, body in paths:
            target = os.path.normpath(os.path.join(folder, path))
            if os.path.commonpath([root, target]) != root or target == spec_path:
                return error_result(name, f"{name}: files: {path!r} points outside the spec's folder")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as f:
                f.write(body)
        with open(spec_path, "w", encoding="utf-8") as f:
            f.write(text)
        result = check_spec_path(spec_path, options, timeout, shown=name, allow_code=allow_code)

    def relative(message):  # a user's traceback names the op file without the temporary folder
        return message.replace(root + os.sep, "") if isinstance(message, str) else message

    result.error, result.notes = relative(result.error), [relative(n) for n in result.notes]
    return result


def ready() -> bool:
    """A warm worker's first job (service.pool.WarmPool.start_workers): it is up, with the report renderers imported and
    the HTML template compiled (it renders the one-spec runs it checks)."""
    from importlib import import_module

    from ..report import FORMATS
    from ..report.html import _env

    for module in FORMATS.values():
        import_module(f"gradlab.report.{module}")
    _env().get_template("report.html.j2")
    return True


def worker_environment() -> dict:
    """Versions and devices where the checks run (a worker's machine: with Ray, a cluster node), without the
    spec hashes; asked once at start-up, so that the web process never imports torch."""
    import json

    from ..environment import environment

    # through JSON: plain types only (torch.__version__ is a TorchVersion, whose unpickling would import torch in the
    # web process, ~1.5 s of its CPU while it serves requests)
    return json.loads(json.dumps({k: v for k, v in environment([]).items() if k != "specs"}, default=str))
