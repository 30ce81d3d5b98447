"""Drive every TaskManagementApi operation of sailpoint 2.x (/task-status/v1) against a server.

Run by the SDK's own interpreter, configured the SDK's standard way (SAIL_BASE_URL,
SAIL_CLIENT_ID, SAIL_CLIENT_SECRET). argv[1] is a JSON object of task ids.
"""

import json
import sys
import warnings
from typing import Any

warnings.filterwarnings("error", message=".*must be one of enum values.*")
warnings.filterwarnings("error", category=UserWarning)

from sailpoint.configuration import Configuration  # noqa: E402
from sailpoint.task_management import ApiClient, TaskManagementApi  # noqa: E402
from sailpoint.task_management.exceptions import NotFoundException  # noqa: E402
from sailpoint.task_management.models.json_patch_operation import JsonPatchOperation  # noqa: E402
from sailpoint.task_management.models.task_status import TaskStatus  # noqa: E402


def dump(task: TaskStatus) -> dict[str, Any]:
    assert isinstance(task, TaskStatus), type(task)
    dumped: dict[str, Any] = json.loads(task.model_dump_json(by_alias=True))
    return dumped


def main() -> None:
    ids = json.loads(sys.argv[1])
    out: dict[str, Any] = {}
    with ApiClient(Configuration()) as client:
        api = TaskManagementApi(client)
        # how this SDK's docs say to list in-progress tasks
        info = api.get_task_status_list_v1_with_http_info(
            limit=250, offset=0, count=True, filters="completionStatus isnull", sorters="created"
        )
        out["pending"] = [dump(t) for t in info.data]
        out["pending_total"] = info.headers.get("X-Total-Count")
        out["completed"] = [
            dump(t)
            for t in api.get_task_status_list_v1(
                count=True,
                filters='completionStatus eq "SUCCESS" and launcher eq "admin"',
                sorters="-created",
            )
        ]
        out["one"] = dump(api.get_task_status_v1(id=ids["succeeded"]))
        patch = [
            JsonPatchOperation.from_dict(
                {"op": "replace", "path": "/completionStatus", "value": "ERROR"}
            )
        ]
        out["patched"] = dump(
            api.update_task_status_v1(id=ids["queued"], json_patch_operation=patch)
        )
        try:
            api.get_task_status_v1(id="0" * 32)
            out["missing"] = "no error"
        except NotFoundException as e:
            out["missing"] = e.status
    print(json.dumps(out))


main()
