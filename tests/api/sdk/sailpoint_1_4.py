"""Drive every v2024 TaskManagementApi operation of sailpoint 1.4.2 against a running server.

Run by the SDK's own interpreter. Configuration comes the SDK's standard way: SAIL_BASE_URL,
SAIL_CLIENT_ID and SAIL_CLIENT_SECRET in the environment; the SDK fetches its own token. argv[1]
is a JSON object of task ids; the results are printed as one JSON object.
"""

import json
import sys
import warnings
from typing import Any

# Unknown enum values only warn in the SDK: here they fail. (The pending-task operations are
# deprecated in this SDK, which warns with a DeprecationWarning: that is not ours to fix.)
warnings.filterwarnings("error", message=".*must be one of enum values.*")
warnings.filterwarnings("error", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

from sailpoint.configuration import Configuration  # noqa: E402
from sailpoint.v2024.api.task_management_api import TaskManagementApi  # noqa: E402
from sailpoint.v2024.api_client import ApiClient  # noqa: E402
from sailpoint.v2024.exceptions import ApiException, NotFoundException  # noqa: E402
from sailpoint.v2024.models.json_patch_operation import JsonPatchOperation  # noqa: E402
from sailpoint.v2024.models.task_status import TaskStatus  # noqa: E402


def dump(task: TaskStatus) -> dict[str, Any]:
    assert isinstance(task, TaskStatus), type(task)
    dumped: dict[str, Any] = json.loads(task.model_dump_json(by_alias=True))
    return dumped


def main() -> None:
    ids = json.loads(sys.argv[1])
    out: dict[str, Any] = {}
    with ApiClient(Configuration()) as client:
        api = TaskManagementApi(client)

        out["pending_headers"] = api.get_pending_task_headers(offset=0, limit=250, count=True)
        info = api.get_pending_task_headers_with_http_info(count=True)
        out["pending_headers_status"] = info.status_code
        out["pending_headers_total"] = info.headers.get("X-Total-Count")

        pending = api.get_pending_tasks(offset=0, limit=250, count=True)
        out["pending"] = [dump(t) for t in pending]
        info = api.get_pending_tasks_with_http_info(count=True)
        out["pending_total"] = info.headers.get("X-Total-Count")

        out["one"] = dump(api.get_task_status(id=ids["succeeded"]))

        listed = api.get_task_status_list(
            limit=250,
            offset=0,
            count=True,
            filters='completionStatus in ("SUCCESS","WARNING")',
            sorters="-created",
        )
        out["completed"] = [dump(t) for t in listed]
        info = api.get_task_status_list_with_http_info(
            count=True, filters='completionStatus eq "Success"'
        )
        out["completed_total"] = info.headers.get("X-Total-Count")
        out["empty"] = api.get_task_status_list(filters='id eq "no-such-task"')

        patch = [
            JsonPatchOperation.from_dict(
                {"op": "replace", "path": "/completionStatus", "value": "TERMINATED"}
            ),
            JsonPatchOperation.from_dict(
                {"op": "replace", "path": "/completed", "value": "2024-06-01T12:00:00.000Z"}
            ),
        ]
        out["patched"] = dump(api.update_task_status(id=ids["running"], json_patch_operation=patch))

        try:
            api.get_task_status(id="0" * 32)
            out["missing"] = "no error"
        except NotFoundException as e:
            out["missing"] = e.status
        try:
            api.get_task_status_list(filters='nope eq "x"')
            out["bad_filter"] = "no error"
        except ApiException as e:
            out["bad_filter"] = {"status": e.status, "body": json.loads(e.body)}
    print(json.dumps(out))


main()
