"""`gradlab serve`: gradient checks as an HTTP service, with every result kept.

    db.py      the tables (SQLAlchemy 2; SQLite by default, a PostgreSQL URL works the same) and the schema check
    runs.py    the queue: accepts runs, feeds the executor (gradlab.executors), stores results and reports
    pool.py    the local workers: long-lived warm processes (a spec naming user code gets a process of its own)
    jobs.py    what a worker process runs (kept light: a fresh worker imports it for every spec)
    render.py  a finished run's document, rows and reports, made by the worker (one-spec runs) or the store process
    intake.py  what a client may submit: size and count caps, options, spec validation without user code
    app.py     the FastAPI routes: the JSON API and the web UI (ui/ holds its templates)
    guard.py   what keeps other web sites out: Host/Origin checks, security headers, the login cookie and its rate limit
    history.py what a spec's page and /api/specs/{name}/history show: trends over runs, the diff of two runs
    client.py  `gradlab check --remote URL`: submit, wait, print what a local check prints

Nothing here is imported by the rest of gradlab except `cli` (for --remote) and `commands.serve`.
"""
