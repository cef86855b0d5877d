"""The service's tables, through SQLAlchemy 2: SQLite by default, any SQLAlchemy URL (PostgreSQL) the same way.

    runs         one row per submitted run: status, label, options, the check's JSON document when done
    run_specs    what was submitted: each spec's name and YAML text, in order (a retry runs them again)
    spec_files   the op files sent with a spec (its relative `impl:` paths): path as the spec names it, text, size, hash
    spec_results one row per checked spec: its name, verdict, error and `--stats` summary (a spec's history)
    comparisons  one row per (tensor, engine pair, device) of a checked spec: max relative error and status
    reports      each finished run's reports (html, md, junit, csv, json), unless --reports-dir keeps them as files

The schema is versioned: `gradlab_meta.schema_version` is written when the tables are created, and a
database of another version is refused at start-up with what to do, instead of being misread.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from ..errors import GradlabError

SCHEMA_VERSION = 1
DEFAULT_URL = "sqlite:///gradlab.db"
STATUSES = ("queued", "running", "done", "error", "interrupted")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "gradlab_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    label: Mapped[str | None] = mapped_column(String(200))
    options: Mapped[dict] = mapped_column(JSON)
    n_specs: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)  # why the run could not finish (a worker crashed, ...)
    result: Mapped[str | None] = mapped_column(Text)  # the `gradlab check --format json` document
    # with --stats: what `gradlab check --stats` prints after the check's table ("text"), and its notes on stderr ("skipped")
    stats_output: Mapped[dict | None] = mapped_column(JSON)
    specs: Mapped[list[RunSpec]] = relationship(order_by="RunSpec.position", cascade="all, delete-orphan")


class RunSpec(Base):
    __tablename__ = "run_specs"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    yaml: Mapped[str] = mapped_column(Text)


class SpecFile(Base):
    """An op file sent with a spec, under the relative impl: path it stands for (intake.plain_relative). A table added
    to schema version 1 without changing the others: create_all adds it to an older database of the same version."""

    __tablename__ = "spec_files"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # the spec's, in run_specs
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))


class SpecResultRow(Base):
    __tablename__ = "spec_results"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300), index=True)  # the spec's name (its `name:`, else the file's stem)
    path: Mapped[str] = mapped_column(String(300), index=True)  # the name the client sent
    passed: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float] = mapped_column(Float)
    stats: Mapped[dict | None] = mapped_column(JSON)  # `--stats` summary: per layer, its verdict and delta ratio


class ComparisonRow(Base):
    __tablename__ = "comparisons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    spec: Mapped[str] = mapped_column(String(300), index=True)
    parameter: Mapped[str] = mapped_column(String(300))
    candidate: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(32))
    dtype: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    max_rel_err: Mapped[float | None] = mapped_column(Float)


class Report(Base):
    __tablename__ = "reports"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    fmt: Mapped[str] = mapped_column(String(8), primary_key=True)
    text: Mapped[str] = mapped_column(Text)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets the API read while the queue writes; foreign keys make deletes cascade. No automatic checkpoint: it would
    run (copy the WAL into the database and fsync it) inside whichever commit crossed the threshold, a POST's among them;
    the server's writer thread checkpoints instead (checkpoint()), off the requests' path."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def masked_url(url: str) -> str:
    """The database URL as every message shows it: its password, if any, as *** (`postgresql+psycopg://u:***@host/db`)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        if parsed.password is not None:
            return parsed.render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can read: mask what looks like user:password@
        pass
    return re.sub(r"(://[^:/@?#\s]*:)[^@\s]*@", r"\1***@", url)


def scrubbed(text: str, url: str) -> str:
    """`text` (a message, an exception's words) with the URL masked and its password nowhere."""
    text = text.replace(url, masked_url(url))
    text = re.sub(r"(://[^:/@?#\s]*:)[^@\s]*@", r"\1***@", text)
    password = _password(url)
    if password:
        from urllib.parse import quote

        for form in {password, quote(password, safe="")}:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", "***", text)
    return text


def _password(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password
    except Exception:
        found = re.search(r"://[^:/@?#\s]*:([^@\s]*)@", url)
        return found.group(1) if found else None


def open_db(url: str = DEFAULT_URL) -> sessionmaker:
    """Connect, create the tables of a new database, and refuse one written by another schema version.

    Every message names the URL with its password masked (masked_url): a start-up error is often pasted into a ticket."""
    try:
        engine = create_engine(url, **({"connect_args": {"check_same_thread": False}} if url.startswith("sqlite") else {}))
    except Exception as exc:  # a malformed URL, a driver that is not installed
        raise GradlabError(f"--db {masked_url(url)!r}: {scrubbed(str(exc), url)}; expected an SQLAlchemy URL such as "
                           "sqlite:///gradlab.db or postgresql+psycopg://user@host/gradlab") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _check_schema(engine, url)
    return sessionmaker(engine, expire_on_commit=False)


def _check_schema(engine: Engine, url: str) -> None:
    shown = masked_url(url)
    try:
        tables = set(inspect(engine).get_table_names())
    except Exception as exc:
        raise GradlabError(f"--db {shown!r}: cannot open the database ({scrubbed(' '.join(str(exc).split()), url)[:200]})") from None
    if tables and Meta.__tablename__ not in tables:
        raise GradlabError(f"--db {shown!r}: this database holds tables that are not gradlab's ({', '.join(sorted(tables)[:5])}); "
                           "give gradlab a database of its own")
    Base.metadata.create_all(engine)
    with sessionmaker(engine)() as session, session.begin():
        found = session.get(Meta, "schema_version")
        if found is None:
            session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        elif found.value != str(SCHEMA_VERSION):
            raise GradlabError(f"--db {shown!r}: the database has gradlab schema version {found.value}, this gradlab reads version "
                               f"{SCHEMA_VERSION}; start with a new --db (or the gradlab that wrote it)")


def checkpoint(sessions: sessionmaker) -> None:
    """Copy an SQLite database's write-ahead log into it (PASSIVE: readers and writers go on meanwhile); nothing for
    another database."""
    from sqlalchemy import text

    with sessions() as session:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))


def interrupt_unfinished(sessions: sessionmaker) -> list[int]:
    """At start-up: runs a previous server left `running` become `interrupted` (retry re-queues them)."""
    with sessions() as session, session.begin():
        runs = session.scalars(select(Run).where(Run.status == "running")).all()
        for run in runs:
            run.status, run.finished = "interrupted", utcnow()
            run.error = "the server stopped while this run was running; POST /api/runs/{id}/retry runs it again".replace("{id}", str(run.id))
        return [run.id for run in runs]


def iso(moment: datetime | None) -> str | None:
    """UTC, to the second; SQLite hands back naive datetimes, which are UTC here."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat(timespec="seconds")
