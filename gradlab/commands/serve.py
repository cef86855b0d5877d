"""`gradlab serve`: the gradient checker as an HTTP service with a web UI and a database of every run."""

from __future__ import annotations

import sys

import click

from ..errors import GradlabError

EXAMPLES = """
\b
Examples:
  gradlab serve                                   # http://127.0.0.1:8750, runs kept in ./gradlab.db
  gradlab serve --host 0.0.0.0 --token-file token.txt --workers 4
  gradlab serve --db postgresql+psycopg://gradlab@db/gradlab --reports-dir /srv/gradlab/reports
  gradlab serve --executor ray --address auto      # each spec a Ray task on the cluster
  curl -s -X POST localhost:8750/api/runs -F specs=@specs/seed003_two_layer.yaml
"""

@click.command("serve", epilog=EXAMPLES, short_help="Check specs sent over HTTP; keep and show every result.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; any address but loopback needs --token-file).")
@click.option("--port", type=click.IntRange(0, 65535), default=8750, show_default=True, help="Port (0: any free port; the URL is printed).")
@click.option("--db", "db_url", default="sqlite:///gradlab.db", show_default=True,
              help="SQLAlchemy URL of the database that keeps every run, e.g. postgresql+psycopg://user@host/gradlab.")
@click.option("--workers", type=click.IntRange(min=1), help="Specs checked at once, each in its own worker process [default: the cores].")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a pool of worker processes here; ray: each spec a Ray task (pip install 'gradlab[ray]').")
@click.option("--address", metavar="ADDR", help="With --executor ray: the cluster, e.g. auto or ray://head:10001 [default: a local Ray instance].")
@click.option("--allow-code", is_flag=True, help="Accept specs with impl: (a user's Python code, run in the workers); refused with 403 otherwise.")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Every request must send 'Authorization: Bearer' with the token in this file.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A name clients reach the server under (a DNS name, a proxy's), besides the bound address and this machine's "
                   "names; repeatable; '*' accepts any. Requests with another Host header are refused (403: DNS rebinding).")
@click.option("--reports-dir", type=click.Path(file_okay=False), help="Keep each run's reports as files DIR/<run id>/report.* [default: in the database].")
@click.option("--max-queue", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Runs waiting or running at most; more are refused with 429 and Retry-After.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True, max=7 * 86_400), default=600.0, show_default=True, metavar="SECONDS",
              help="Deadline of a spec whose client and check.timeout name none.")
def command(host, port, db_url, workers, executor, address, allow_code, token_file, allowed_hosts, reports_dir, max_queue, timeout):
    """Check specs submitted over HTTP, keep every result, and show them in a web UI.

    POST /api/runs takes specs (JSON or a multipart upload) and answers 202 with the run's
    id; GET /api/runs/{id} gives its status and, when done, the same JSON document as
    `gradlab check --format json`; GET /api/runs/{id}/report.{html,md,xml,csv,json} its
    reports. The web UI at / lists the runs, shows each run's report and each spec's trend.
    Clients: curl, or `gradlab check --remote URL`.
    """
    import os
    import socket

    try:
        import uvicorn

        from ..service.app import ServiceConfig, create_app
        from ..service.db import open_db
    except ImportError as exc:
        raise GradlabError(f"gradlab serve needs the service extra ({exc.name} is missing): pip install 'gradlab[service]'") from None
    from ..executors import make_executor

    from ..service.guard import allowed_hosts as host_names, is_loopback

    token = _read_token(token_file) if token_file else None
    if token is None and not is_loopback(host):
        raise GradlabError(f"--host {host}: listening beyond this machine needs a token, or anyone who reaches the port runs "
                           "checks and reads every result: start with --token-file FILE (clients send 'Authorization: Bearer "
                           "<token>'; gradlab check --remote reads $GRADLAB_TOKEN), or listen on 127.0.0.1")
    hosts, by_connection = host_names(host, allowed_hosts)
    if reports_dir:
        from ..output import check_writable

        check_writable(os.path.join(reports_dir, ".probe"), "--reports-dir")
    sessions = open_db(db_url)
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise GradlabError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    if executor == "local":
        _warm_forkserver()
    if executor == "local" and address is None:  # long-lived warm workers (service.pool): no fork per spec
        from ..service.pool import WarmPool

        pool = WarmPool(workers)
    else:
        pool = make_executor(executor, workers=workers, address=address)
    workers = workers or getattr(pool, "workers", None) or os.cpu_count() or 1
    app = create_app(ServiceConfig(sessions=sessions, executor=pool, capacity=workers, allow_code=allow_code, token=token,
                                   reports_dir=reports_dir, max_queued=max_queue, timeout=timeout, hosts=hosts,
                                   connection_address=by_connection, db_url=db_url))
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"gradlab serve: http://{shown}:{bound}  (database {_safe_url(db_url)}, {workers} {executor} workers"
               f"{', user code allowed' if allow_code else ''}{', token required' if token else ''})", err=True)
    if not is_loopback(host) and "*" not in hosts:
        click.echo(f"gradlab serve: answering to Host {', '.join(sorted(hosts))}{' and the address connected to' if by_connection else ''} "
                   "(--allowed-host NAME adds one)", err=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5))
    # Reports are rendered by the workers and the store process, but the dispatcher, slot and writer threads still share
    # this process's GIL with the requests; a request's thread waiting for it waits up to the switch interval at each
    # hand-over (5 ms by default, several per request): 1 ms keeps the API's tail short (bench_service, alternated:
    # POST p99 76-84 ms at 1 ms against 107-112 ms at 5 ms; 0.5 ms no better).
    sys.setswitchinterval(0.001)
    server.run(sockets=[sock])


def _warm_forkserver() -> None:
    """Start the forkserver the local workers are forked from with gradlab.executors' preload plus
    gradlab.service.warm, which checks two small specs in it: every worker then starts warm (a fresh worker's first
    check pays torch's and gradlab's first-call costs, 89 against 49 ms a shipped spec). The executor finds the
    forkserver running and uses it as it is."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return
    from multiprocessing import forkserver

    from ..executors import PRELOAD

    mp.get_context("forkserver").set_forkserver_preload([*PRELOAD, "gradlab.service.warm"])
    forkserver.ensure_running()


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read(4097).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise GradlabError(f"{path}: --token-file: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not token or len(token) > 4096 or not token.isprintable():
        raise GradlabError(f"{path}: --token-file: expected one line of 1 to 4096 printable characters (the token)")
    return token


def _safe_url(url: str) -> str:
    """The database URL without its password, for the start-up line (the same mask as every --db message)."""
    from ..service.db import masked_url

    return masked_url(url)
