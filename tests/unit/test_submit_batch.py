"""A batch submit's fast paths (issue 17): the same rules as one task at a time, less work.

Ids made in one go, tasks filled from one checked task, schemas compiled once, and an
arguments object given again checked once when nothing can have changed it meanwhile.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest

from taskstatus.caller import Caller
from taskstatus.errors import InvalidArguments
from taskstatus.handlers import Registry, handler, validate_many_with_schema
from taskstatus.limits import InputRejected, check_json, check_json_each, plain_json
from taskstatus.model import InvalidTaskChange, new_id, new_ids, new_task, new_tasks
from taskstatus.options import Submission
from taskstatus.query import TaskQuery
from taskstatus.service import TaskService
from taskstatus.store import make_store
from tests.conftest import SUMMARY, now

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}, "s": {"type": "string"}},
    "required": ["n"],
    "additionalProperties": False,
}

# Values check_json refuses, each for a reason of its own.
UNSTORABLE: list[Any] = [
    {"a": "x\x00y"},
    {"a\x00": 1},
    {"a": "\ud800"},
    {"a": 2**63},
    {"a": -(2**63) - 1},
    {"a": float("nan")},
    {"a": float("inf")},
    {"a": [1, {"b": {1, 2}}]},
    {1: "a"},
    {"a": "x" * 65_537},
    {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
]


class Shifty(Mapping[str, Any]):
    """A mapping that is storable and valid when first read, neither afterwards."""

    def __init__(self) -> None:
        self.reads = 0

    def _now(self) -> dict[str, Any]:
        return {"n": 1} if self.reads <= 1 else {"n": "x\x00"}

    def __getitem__(self, key: str) -> Any:
        return self._now()[key]

    def __iter__(self) -> Iterator[str]:
        self.reads += 1
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())


def test_new_ids_are_uuid7_of_their_millisecond_and_do_not_repeat() -> None:
    """`new_ids` gives UUIDv7 ids of the format new_id gives (32 lowercase hex digits, the
    version, the RFC's variant, the creation ms in the first 48 bits), none twice, with all
    74 random bits random (the variant digit takes each of its four values), increasing."""
    before = int(time.time() * 1000)
    ids = new_ids(5000)
    after = int(time.time() * 1000)
    assert len(ids) == len(set(ids)) == 5000
    assert ids == sorted(ids)  # a batch's tasks in the order of their ids
    for task_id in ids:
        parsed = uuid.UUID(hex=task_id)
        assert len(task_id) == 32 and task_id == task_id.lower() and task_id == parsed.hex
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= int(task_id[:12], 16) <= after
    assert {i[16] for i in ids} == set("89ab")
    assert {i[13] for i in ids} == set("0123456789abcdef")
    time.sleep(0.002)
    assert new_ids(1)[0] > max(ids)
    one = [new_id() for _ in range(400)]
    assert {i[16] for i in one} == set("89ab") and {len(i) for i in one} == {32}
    assert all(uuid.UUID(hex=i).version == 7 for i in one)


def test_new_tasks_are_the_tasks_new_task_makes() -> None:
    """Each of a batch's tasks equals the task new_task makes of the same input (but for its
    id), and owns its arguments and attributes (no dict shared with the caller or another
    task)."""
    args: list[dict[str, Any]] = [{"n": 1}, {"n": 2}, {"n": 3}]
    at = now()
    options: dict[str, Any] = {"priority": 5, "max_attempts": 2, "timeout": 3.0}
    tasks = new_tasks(
        handler="noop",
        definition=SUMMARY,
        arguments=args,
        launcher="me",
        now=at,
        idempotency_keys=["k:0", "k:1", "k:2"],
        **options,
    )
    assert len({t.id for t in tasks}) == 3
    for i, task in enumerate(tasks):
        alone = new_task(
            handler="noop",
            definition=SUMMARY,
            arguments=args[i],
            launcher="me",
            now=at,
            idempotency_key=f"k:{i}",
            **options,
        )
        assert task == dataclasses.replace(alone, id=task.id)
        assert task.arguments is not args[i]
    for one, other in itertools.combinations(tasks, 2):
        assert one.arguments is not other.arguments
        assert one.attributes is not other.attributes


@pytest.mark.parametrize("bad", UNSTORABLE, ids=range(len(UNSTORABLE)))
def test_an_unstorable_value_in_a_batch_is_refused_as_alone(bad: Any) -> None:
    """check_json_each refuses a batch with one unstorable value among repeated good ones,
    with the message check_json gives for that value alone."""
    with pytest.raises(InputRejected) as alone:
        check_json(bad, "arguments")
    good: dict[str, Any] = {"a": [1, 2.5, None, True, {"b": "c"}]}
    with pytest.raises(InputRejected) as batch:
        check_json_each([good] * 3 + [bad] + [good] * 3, "arguments")
    assert str(batch.value) == str(alone.value)
    assert not plain_json(bad)


def test_a_mapping_given_twice_is_checked_twice() -> None:
    """An object that is not plain JSON (here a Mapping that changes when read) is checked
    each time it is given: its repeat's NUL is refused."""
    shifty = Shifty()
    with pytest.raises(InputRejected, match="NUL"):
        check_json_each([shifty, shifty], "arguments")


def test_a_repeated_plain_object_is_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of one plain arguments object given k times runs the schema's validator
    once, and every item gets arguments equal to what validating it alone gives."""
    h = handler("t.once", arguments=SCHEMA, registry=Registry())(lambda ctx, a: None)
    runs: list[object] = []
    iter_errors = jsonschema.Draft202012Validator.iter_errors

    def counting(self: jsonschema.Draft202012Validator, instance: Any) -> Any:
        runs.append(instance)
        return iter_errors(self, instance)

    monkeypatch.setattr(jsonschema.Draft202012Validator, "iter_errors", counting)
    args = {"n": 1, "s": "x"}
    assert h.validate_many([args] * 50) == [{"n": 1, "s": "x"}] * 50
    assert len(runs) == 1
    runs.clear()
    assert h.validate_many([{"n": 1}, {"n": 2}]) == [{"n": 1}, {"n": 2}]
    assert len(runs) == 2


def test_a_failing_item_in_the_middle_of_a_batch_rejects_it_as_alone() -> None:
    """A batch whose middle item fails the schema is refused with the errors (sorted by
    path) that validating that item alone gives, with repeated or distinct good items."""
    h = handler("t.middle", arguments=SCHEMA, registry=Registry())(lambda ctx, a: None)
    bad = {"n": -1, "s": 5, "extra": True}
    with pytest.raises(InvalidArguments) as alone:
        h.validate(bad)
    assert len(alone.value.errors) == 3
    good = {"n": 1}
    batches = [[good] * 5 + [bad] + [good] * 5, [{"n": i} for i in range(5)] + [bad, good]]
    for batch in batches:
        with pytest.raises(InvalidArguments) as info:
            h.validate_many(batch)
        assert info.value.errors == alone.value.errors
        with pytest.raises(InvalidArguments) as stored:
            validate_many_with_schema("t.middle", h.schema, batch)
        assert stored.value.errors == alone.value.errors


def test_a_mapping_given_twice_is_validated_twice() -> None:
    """An arguments object that is not plain JSON is validated each time it is given: a
    Mapping valid when first read and invalid after fails the batch."""
    h = handler("t.shifty", arguments=SCHEMA, registry=Registry())(lambda ctx, a: None)
    shifty = Shifty()
    with pytest.raises(InvalidArguments, match="is not of type 'integer'"):
        h.validate_many([shifty, shifty, shifty])


def test_a_handler_without_a_schema_takes_any_object_and_only_an_object() -> None:
    """A handler that declares no arguments takes any JSON object in a batch (a copy of
    each) and still refuses an item that is not one; a schema that says more than
    "an object" is applied."""
    free = handler("t.free", registry=Registry())(lambda ctx, a: None)
    args = {"anything": [1]}
    out = free.validate_many([args, {}])
    assert out == [args, {}] and out[0] is not args
    with pytest.raises(InvalidArguments, match="arguments must be a JSON object"):
        free.validate_many([{}, [1, 2], {}])
    strict = handler("t.min", arguments={"type": "object", "minProperties": 1}, registry=Registry())
    with pytest.raises(InvalidArguments, match="should be non-empty"):
        strict(lambda ctx, a: None).validate_many([{"a": 1}, {}])


class WithDefault(pydantic.BaseModel):
    n: int = 0
    token: str = pydantic.Field(default_factory=lambda: uuid.uuid4().hex)


def test_a_pydantic_handler_validates_every_item() -> None:
    """A handler with a pydantic model validates each item, repeats included: its default
    factories run once per task."""
    h = handler("t.model", arguments=WithDefault, registry=Registry())(lambda ctx, a: None)
    out = h.validate_many([{}] * 3)
    assert len({a["token"] for a in out}) == 3


@pytest.mark.anyio
async def test_a_batch_with_a_failing_item_stores_nothing(tmp_path: Path) -> None:
    """submit_many of repeated good arguments with one failing item in the middle raises
    what validating that item alone raises, and stores no task."""
    registry = Registry()
    handler("t.svc", arguments=SCHEMA, registry=registry)(lambda ctx, a: None)
    service = TaskService(make_store(f"sqlite:///{tmp_path}/t.db"), registry)
    caller = Caller(client_id="c", owner="me", scopes=frozenset())
    async with service:
        with pytest.raises(InvalidArguments) as alone:
            await service.validate("t.svc", {"n": "1"})
        good = {"n": 1}
        with pytest.raises(InvalidArguments) as info:
            await service.submit_many(caller, "t.svc", [good] * 10 + [{"n": "1"}] + [good] * 10)
        assert info.value.errors == alone.value.errors
        tasks = await service.submit_many(caller, "t.svc", [good] * 10)
        assert [t.arguments for t in tasks] == [good] * 10
        page = await service.query(caller, TaskQuery(count=True))
        assert page.total == 10 and {t.id for t in page.items} == {t.id for t in tasks}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "options",
    [{"priority": 2**31}, {"priority": -(2**31) - 1}, {"max_attempts": 2**31}],
    ids=["priority", "negative priority", "max_attempts"],
)
async def test_integers_beyond_32_bits_are_refused_for_every_batch_size(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    """A priority or max_attempts outside the 32-bit range (PostgreSQL stores them as int4,
    and a bulk COPY would wrap them silently) is refused for one task and for a batch large
    enough for COPY, before anything is stored; the 32-bit bounds themselves are taken."""
    registry = Registry()
    handler("t.int", registry=registry)(lambda ctx, a: None)
    service = TaskService(make_store(f"sqlite:///{tmp_path}/t.db"), registry)
    caller = Caller(client_id="c", owner="me", scopes=frozenset())
    async with service:
        for n in (1, 200):
            with pytest.raises(InputRejected, match="32-bit range"):
                await service.submit_many(
                    caller, "t.int", [{}] * n, dataclasses.replace(Submission(), **options)
                )
        edge: dict[str, Any] = {k: (2**31 - 1 if v > 0 else -(2**31)) for k, v in options.items()}
        assert (
            len(
                await service.submit_many(
                    caller, "t.int", [{}] * 3, dataclasses.replace(Submission(), **edge)
                )
            )
            == 3
        )
        page = await service.query(caller, TaskQuery(count=True))
        assert page.total == 3


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_timeout_must_be_a_finite_positive_number(timeout: float) -> None:
    """new_task refuses a timeout that is not a positive finite number of seconds: NaN and
    infinity passed before, and were stored as no timeout by the statement and as themselves
    by COPY."""
    with pytest.raises(InvalidTaskChange, match="timeout"):
        new_task(
            handler="h", definition=SUMMARY, arguments={}, launcher="l", now=now(),
            timeout=timeout,
        )  # fmt: skip
