"""The tasks list's query string -> a filter, a sort and a page, and back to links.

The ``filters`` box takes the API's V3 grammar over the v2024 field names (fields.TASK_STATUS),
with the API's own error messages; quick filters (state, handler, launcher, completion
status), the search (text in the arguments, attributes or names) and the view (all, pending,
completed, as the API's lists) are added to it with ``and``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from taskstatus.fields import TASK_STATUS
from taskstatus.model import CompletionStatus, TaskState
from taskstatus.query import (
    Condition,
    Expr,
    Op,
    Or,
    QueryError,
    SortKey,
    TaskField,
    all_of,
    parse_bound,
    parse_sorters,
)

__all__ = ["PAGE_SIZES", "SEARCH_WINDOWS", "ListQuery"]

PAGE_SIZES = (25, 50, 100, 250)
KEYS = ("view", "filters", "state", "handler", "launcher", "status", "q", "within", "sort", "limit")
# A search reads the text of every task it looks at (no index can find a substring), so it
# looks only at the tasks created within this window, unless told otherwise: fast at any size.
SEARCH_WINDOWS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7),
                  "30d": timedelta(days=30), "all": None}  # fmt: skip
SEARCH_DEFAULT = "1d"
VIEWS = {
    "all": (None, "-created"),
    "pending": (Condition(TaskField.COMPLETION_STATUS, Op.ISNULL), "created"),
    "completed": (Condition(TaskField.COMPLETION_STATUS, Op.PR), "-created"),
}
SORTABLE = (
    "created",
    "modified",
    "launched",
    "completed",
    "uniqueName",
    "launcher",
    "percentComplete",
    "priority",
    "attempts",
)


@dataclass
class ListQuery:
    view: str = "all"
    filters: str = ""
    state: str = ""
    handler: str = ""
    launcher: str = ""
    status: str = ""
    q: str = ""
    within: str = SEARCH_DEFAULT
    sort: str = ""
    limit: int = 50
    offset: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ListQuery:
        text = {k: params.get(k, "").strip() for k in KEYS if k != "limit"}
        query = cls(
            view=text["view"],
            filters=text["filters"],
            state=text["state"],
            handler=text["handler"],
            launcher=text["launcher"],
            status=text["status"],
            q=text["q"],
            within=text["within"] if text["within"] in SEARCH_WINDOWS else SEARCH_DEFAULT,
            sort=text["sort"],
        )
        if query.view not in VIEWS:
            query.view = "all"
        try:
            query.limit = int(params.get("limit") or 50)
        except ValueError:
            query.limit = 50
        if query.limit not in PAGE_SIZES:
            query.limit = 50
        try:
            query.offset = max(0, min(int(params.get("offset") or 0), 100_000))
        except ValueError:
            query.offset = 0
        return query

    def where(self) -> Expr | None:
        """The filter of the list; an error in a part is kept in `errors` (that part is
        then left out, so the page still shows something)."""
        parts: list[Expr | None] = [VIEWS[self.view][0]]
        try:
            parts.append(parse_bound(self.filters, TASK_STATUS))
        except QueryError as e:
            self.errors["filters"] = str(e)
        if self.state:
            try:
                parts.append(Condition(TaskField.STATE, Op.EQ, (TaskState(self.state),)))
            except ValueError:
                self.errors["state"] = f"state: no state {self.state!r}"
        if self.status:
            try:
                status = CompletionStatus(self.status)
                parts.append(Condition(TaskField.COMPLETION_STATUS, Op.EQ, (status,)))
            except ValueError:
                self.errors["status"] = f"status: no completion status {self.status!r}"
        if self.handler:
            parts.append(Condition(TaskField.HANDLER, Op.EQ, (self.handler,)))
        if self.launcher:
            parts.append(Condition(TaskField.LAUNCHER, Op.EQ, (self.launcher,)))
        if self.q:
            window = SEARCH_WINDOWS[self.within]
            if window is not None:
                since = datetime.now(UTC) - window
                parts.append(Condition(TaskField.CREATED, Op.GE, (since,)))
            parts.append(
                Or(
                    tuple(
                        Condition(f, Op.CO, (self.q,))
                        for f in (TaskField.ARGUMENTS, TaskField.ATTRIBUTES, TaskField.UNIQUE_NAME)
                    )
                )
            )
        return all_of(*parts)

    def sort_keys(self) -> tuple[SortKey, ...]:
        try:
            return parse_sorters(self.sort or VIEWS[self.view][1], TASK_STATUS)
        except QueryError as e:
            self.errors["sort"] = str(e)
            return parse_sorters(VIEWS[self.view][1], TASK_STATUS)

    def params(self, **changes: object) -> dict[str, str]:
        values = {k: str(getattr(self, k)) for k in KEYS}
        values["offset"] = str(self.offset)
        values.update({k: str(v) for k, v in changes.items()})
        defaults = {"view": "all", "limit": "50", "offset": "0", "within": SEARCH_DEFAULT}
        return {k: v for k, v in values.items() if v and defaults.get(k) != v}

    def url(self, **changes: object) -> str:
        encoded = urlencode(self.params(**changes))
        return "/ui/tasks" + (f"?{encoded}" if encoded else "")

    def sort_url(self, name: str) -> str:
        """The header link: sort by `name`, or flip the order when already sorted by it."""
        current = self.sort or VIEWS[self.view][1]
        flipped = f"-{name}" if current == name else name
        if current not in (name, f"-{name}"):
            flipped = f"-{name}"
        return self.url(sort=flipped, offset=0)

    def sorted_by(self, name: str) -> str:
        current = self.sort or VIEWS[self.view][1]
        return "descending" if current == f"-{name}" else "ascending" if current == name else ""
