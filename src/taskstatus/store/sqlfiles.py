"""Load a dialect's SQL: named blocks from ``sql/<dialect>.sql`` and ordered migrations.

A block starts with a ``-- name: <name>`` line and runs to the next one. ``{columns}`` in a
block is replaced by the ``columns`` block, the one place a dialect lists a task's columns;
``{run_columns}`` by the same list with NULL where it reads a task's definition summary and
its messages (``{column_definition}``, ``{column_messages}``): the columns a claim returns, as a
run reads neither (rows.task_from_row then gives the bare summary and no messages).
State lists come from the lifecycle in taskstatus.model, so SQL guards cannot drift from it:
``{from:STATE}`` is the states STATE may be entered from, ``{leased}``, ``{pending}`` and
``{terminal}`` the named groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from taskstatus.model import LEASED_STATES, PENDING_STATES, TERMINAL_STATES, TaskState, sources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# The subqueries of the column list that a claim leaves out ({run_columns}).
_LOOKUPS = ("column_definition", "column_messages")
_GUARD = re.compile(r"\{(from:\w+|leased|pending|terminal)\}")


def _states(states: Iterable[TaskState]) -> str:
    return ", ".join(f"'{s.value}'" for s in sorted(states)) or "NULL"


def _guard(m: re.Match[str]) -> str:
    name = m.group(1)
    if name.startswith("from:"):
        return _states(sources(TaskState(name[5:])))
    groups = {"leased": LEASED_STATES, "pending": PENDING_STATES, "terminal": TERMINAL_STATES}
    return _states(groups[name])


def compact(sql: str) -> str:
    """SQL without comments and with single spaces between tokens: the files are written for
    people, the statements sent short (psycopg caches its placeholder conversion only for
    statements of up to 4 KiB). Knows '...' string literals (kept as they are, '' included);
    the query files use no other kind of quoting."""
    out: list[str] = []
    in_string = space = False
    i = 0
    while i < len(sql):
        c = sql[i]
        if in_string:
            out.append(c)
            in_string = c != "'"
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            space = True
            continue
        elif c.isspace():
            space = True
        else:
            if space and out:
                out.append(" ")
            space = False
            in_string = c == "'"
            out.append(c)
        i += 1
    return "".join(out)


def load_queries(dialect: str) -> dict[str, str]:
    text = resources.files("taskstatus.store").joinpath(f"sql/{dialect}.sql").read_text()
    parts = _NAME.split(text)
    queries = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    # compacted first: their comments must not carry a marker into the statements
    lookups = {f"{{{name}}}": compact(queries.pop(name, "NULL")) for name in _LOOKUPS}
    columns = run_columns = compact(queries.get("columns", ""))
    for marker, lookup in lookups.items():
        columns = columns.replace(marker, lookup)
        run_columns = run_columns.replace(marker, "NULL")
    queries["columns"] = columns
    return {
        name: compact(
            _GUARD.sub(
                _guard, body.replace("{columns}", columns).replace("{run_columns}", run_columns)
            )
        )
        for name, body in queries.items()
    }


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """The dialect's migrations (``NNNN_name.sql``), in version order."""
    folder = resources.files("taskstatus.store").joinpath(f"migrations/{dialect}")
    found = []
    for entry in folder.iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} migrations are not numbered 1..n: {versions}")
    return found
