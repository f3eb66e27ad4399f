"""The cause of a failure, in one sentence with what to do, for the errors of the libraries underneath.

A step that fails keeps its exception's text for the log; what the run's summary, the load registry and the owner's
mail start with is `cause(exc)`: the root cause as the operator can act on it (`No space left on device writing
<path>: free space there and run again`), found anywhere in the exception's chain (a DuckDB error that wraps the
operating system's, a SQLAlchemy error that wraps psycopg2's). An error it does not recognise gives None, and the
exception's own text is shown as before.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Iterator

# the operating system's words for the errors recognised by number, as libraries quote them in their own messages
_DISK_FULL = re.compile(r"no space left on device|disk quota exceeded|database or disk is full", re.IGNORECASE)
# where a library says it was writing: DuckDB ('Could not write file "<path>"'), SQLite, Python ('<path>')
_WRITING = re.compile(r"""(?:write file|writing|open file|file)\s*["']([^"']+)["']""", re.IGNORECASE)
_REFUSED = re.compile(
    r'connection to server at "?([^"\s,]+)"?,? port (\d+) failed: Connection refused|could not connect to server',
    re.IGNORECASE,
)
_PASSWORD = re.compile(r'password authentication failed for user "([^"]+)"', re.IGNORECASE)
_NO_PASSWORD = re.compile(r"could not find a value for secret field password", re.IGNORECASE)
_TERMINATED = re.compile(
    r"terminating connection due to administrator command|server closed the connection unexpectedly", re.IGNORECASE
)
_DUCKDB_LOCK = re.compile(r'Could not set lock on file "([^"]+)".*?\(PID (\d+)\)', re.IGNORECASE | re.DOTALL)
_NO_DATABASE = re.compile(r'database "([^"]+)" does not exist', re.IGNORECASE)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it was raised from or during, innermost last; each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _disk_full(exc: BaseException, text: str) -> str | None:
    for link in chain(exc):
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT):
            where = link.filename2 or link.filename  # a copy's error names its source, then where it was writing
            return _full_message(str(where) if where else _written_path(text))
    if _DISK_FULL.search(text):
        return _full_message(_written_path(text))
    return None


def _written_path(text: str) -> str | None:
    found = _WRITING.search(text)
    return found.group(1) if found else None


def _full_message(path: str | None) -> str:
    where = f" writing {path}" if path else _fullest_folder()
    return f"No space left on device{where}: free space there and run again"


FULL_BELOW_BYTES = 1024 * 1024  # a folder's filesystem with less free space than this is named as the full one


def _fullest_folder() -> str:
    """When the error does not say where it was writing (a library's bare ENOSPC): the project's folders whose
    filesystem is (nearly) full, as ' (<folder>: <n> KiB free)', or '' when none is."""
    import os

    from survey_warehouse.settings import get_paths

    try:
        paths = get_paths()
        folders = [paths.var, paths.warehouse.parent, paths.published.parent, paths.data_docs, paths.inbox_dir]
        folders += [paths.var / name for name in ("quality", "gx", "exports", "tmp", "logs", "airflow")]
    except Exception:  # the settings themselves cannot be read: say what is known
        return ""
    full: dict[tuple[int, int], tuple[str, int]] = {}
    for folder in folders:
        try:
            stats = os.statvfs(folder)
            device = os.stat(folder).st_dev
        except OSError:
            continue
        free = stats.f_bavail * stats.f_frsize
        if free < FULL_BELOW_BYTES:
            shown = paths.shown(folder)
            key = (device, free)
            if key not in full or len(shown) < len(full[key][0]):  # the top folder on that filesystem names it
                full[key] = (shown, free)
    if not full:
        return ""
    return " (" + "; ".join(f"{shown}: {free // 1024} KiB free" for shown, free in sorted(full.values())) + ")"


def _refused(_exc: BaseException, text: str) -> str | None:
    found = _REFUSED.search(text)
    if not found:
        return None
    server = f"at {found.group(1)}:{found.group(2)} " if found.group(1) else ""
    return (
        f"PostgreSQL {server}refuses connections: start it (or correct host and port in the connection "
        "survey_warehouse, AIRFLOW_CONN_SURVEY_WAREHOUSE) and run again"
    )


def _password(_exc: BaseException, text: str) -> str | None:
    found = _PASSWORD.search(text)
    if not found:
        return None
    return (
        f"PostgreSQL refused the password of user {found.group(1)}: correct it in the connection survey_warehouse "
        "(AIRFLOW_CONN_SURVEY_WAREHOUSE) and run again"
    )


def _no_password(_exc: BaseException, text: str) -> str | None:
    if not _NO_PASSWORD.search(text):
        return None
    return (
        "the connection survey_warehouse (AIRFLOW_CONN_SURVEY_WAREHOUSE) has no password, and dbt's profile needs "
        "one: put one in the URL (postgresql://user:<password>@host:port/database; a server with trust "
        "authentication ignores it) and run again"
    )


def _terminated(_exc: BaseException, text: str) -> str | None:
    if not _TERMINATED.search(text):
        return None
    return (
        "the PostgreSQL server ended the session in the middle of the step (it was restarted, or the session was "
        "terminated): nothing of the step was kept; run again once the server is up"
    )


def _locked(_exc: BaseException, text: str) -> str | None:
    found = _DUCKDB_LOCK.search(text)
    if not found:
        return None
    return (
        f"another process (pid {found.group(2)}) holds the warehouse file {found.group(1)}: wait for it to finish, "
        "or stop it, and run again"
    )


def _no_database(_exc: BaseException, text: str) -> str | None:
    found = _NO_DATABASE.search(text)
    if not found:
        return None
    return f'the database "{found.group(1)}" does not exist on the PostgreSQL server: create it and run again'


RULES: tuple[Callable[[BaseException, str], str | None], ...] = (
    _disk_full,
    _no_password,
    _password,
    _refused,
    _no_database,
    _terminated,
    _locked,
)


def cause(exc: BaseException) -> str | None:
    """The root cause of `exc` in one sentence with what to do, or None when it is not one the rules know."""
    text = "\n".join(f"{type(link).__name__}: {link}" for link in chain(exc))
    for rule in RULES:
        found = rule(exc, text)
        if found:
            return found
    return None


def described(exc: BaseException) -> str:
    """A failed step's error for the registry, the summary and the mail: the cause first (when known), then the
    exception as raised."""
    raised = f"{type(exc).__name__}: {exc}"
    found = cause(exc)
    return f"{found}\n{raised}" if found else raised
