"""Handlers: Python functions registered as task definitions with ``@handler``.

A handler is called as ``fn(ctx, args)``: `ctx` is the TaskContext, `args` the validated
arguments (an instance of the pydantic model given as ``arguments=``, or a dict when a JSON
schema or nothing was given). Its definition (name, description, executor import path and the
JSON schema of its arguments) is what tasks show as taskDefinitionSummary and what other nodes
use to validate submissions.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jsonschema
import orjson
import pydantic

from taskstatus.errors import InvalidArguments, UnknownHandler
from taskstatus.limits import plain_json
from taskstatus.limits_policy import HandlerLimits
from taskstatus.model import TaskDefinition, TaskDefinitionSummary
from taskstatus.schedules import check_cron, check_every

if TYPE_CHECKING:
    from taskstatus.worker.context import TaskContext

__all__ = [
    "REGISTRY",
    "Handler",
    "Registry",
    "handler",
    "validate_many_with_schema",
    "validate_with_schema",
]

# Definition ids are derived from the name, so every node agrees on them without talking.
_DEFINITION_NS = uuid.UUID("5b7f2d0e-8c1a-4d5e-9f3b-7a6c2e1d0f49")

HandlerFn = Callable[["TaskContext", Any], Any]


# Keys of a schema that constrain nothing (annotations): {"type": "object"} with only these
# beside it accepts every JSON object, the schema of a handler that declares no arguments.
_ANNOTATIONS = frozenset({"type", "title", "description", "$comment"})


class _Schema:
    """A JSON schema compiled once: its validator, and whether it accepts every object."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.validator = jsonschema.Draft202012Validator(schema)
        self.any_object = schema.get("type", "object") == "object" and _ANNOTATIONS.issuperset(
            schema
        )

    def check(self, name: str, arguments: Any) -> dict[str, Any]:
        """`arguments` (a copy, as they will be stored) if they fit, else InvalidArguments
        listing every violation with its path, sorted by path."""
        if not isinstance(arguments, Mapping):
            raise InvalidArguments(name, ["arguments must be a JSON object"])
        args = dict(arguments)
        if self.any_object or self.validator.is_valid(args):
            return args
        errors = sorted(self.validator.iter_errors(args), key=lambda e: list(e.absolute_path))
        raise InvalidArguments(
            name,
            [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors],
        )

    def check_many(self, name: str, arguments: Sequence[Any]) -> list[dict[str, Any]]:
        """`check` of each, in order (the first that fails raises). When an object is given
        more than once and every one given is plain JSON (`limits.plain_json`: checking it
        runs no code of the caller's, so nothing changes it meanwhile), each is checked once
        and its repeats get the same checked copy (the task model copies it per task)."""
        if self.any_object or len({id(a) for a in arguments}) == len(arguments):
            return [self.check(name, a) for a in arguments]
        distinct = {id(a): a for a in arguments}
        if not all(plain_json(a) for a in distinct.values()):
            return [self.check(name, a) for a in arguments]
        checked: dict[int, dict[str, Any]] = {}
        out = []
        for a in arguments:
            args = checked.get(id(a))
            if args is None:
                args = checked[id(a)] = self.check(name, a)
            out.append(args)
        return out


@functools.lru_cache(maxsize=256)
def _compiled(schema_json: str) -> _Schema:
    return _Schema(orjson.loads(schema_json))


def _schema(schema: Mapping[str, Any]) -> _Schema:
    return _compiled(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode())


def validate_with_schema(name: str, schema: Mapping[str, Any], arguments: Any) -> dict[str, Any]:
    """Check `arguments` against a JSON schema; every violation is listed with its path."""
    return _schema(schema).check(name, arguments)


def validate_many_with_schema(
    name: str, schema: Mapping[str, Any], arguments: Sequence[Any]
) -> list[dict[str, Any]]:
    """`validate_with_schema` of each of `arguments`, the schema compiled once (see
    `_Schema.check_many`: the same plain object given again shares one checked copy)."""
    return _schema(schema).check_many(name, arguments)


@dataclass(frozen=True)
class Handler:
    """A registered handler. Calling it calls the function (handy in tests)."""

    name: str
    fn: HandlerFn
    description: str
    schema: Mapping[str, Any]
    model: type[pydantic.BaseModel] | None = None
    retry_on: tuple[type[BaseException], ...] = ()
    max_attempts: int | None = None
    timeout: float | None = None
    # Declared in code, stored when a worker starts (taskstatus.scheduling): a cron expression
    # or an interval, and limits across every node.
    schedule: str | timedelta | float | None = None
    limits: HandlerLimits | None = None
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))

    def __call__(self, ctx: TaskContext, args: Any) -> Any:
        return self.fn(ctx, args)

    @property
    def executor(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"

    @functools.cached_property
    def definition(self) -> TaskDefinition:
        """What every node stores of this handler; built once (every submit resolves it, and
        its id is a SHA-1 of the name)."""
        properties = self.schema.get("properties", {})
        summary = TaskDefinitionSummary(
            id=uuid.uuid5(_DEFINITION_NS, self.name).hex,
            unique_name=self.name,
            description=self.description,
            parent_name=self.name,
            executor=self.executor,
            arguments=dict(properties) if isinstance(properties, Mapping) else {},
        )
        return TaskDefinition(summary, self.schema, self.max_attempts, self.timeout)

    @functools.cached_property
    def _compiled(self) -> _Schema:
        """The schema, compiled once per handler (no key to build per submit)."""
        return _schema(self.schema)

    def validate(self, arguments: Any) -> dict[str, Any]:
        """The arguments as they will be stored (JSON), or InvalidArguments."""
        if self.model is None:
            return self._compiled.check(self.name, arguments)
        if isinstance(arguments, Mapping) and self.schema.get("additionalProperties") is False:
            declared = {
                alias
                for name, f in self.model.model_fields.items()
                for alias in (name, f.alias, f.validation_alias)
                if isinstance(alias, str)
            }
            undeclared = sorted(str(k) for k in arguments if k not in declared)
            if undeclared:
                raise InvalidArguments(self.name, [_undeclared(undeclared, declared)])
        try:
            return self.model.model_validate(arguments).model_dump(mode="json")
        except pydantic.ValidationError as e:
            raise InvalidArguments(
                self.name,
                [
                    f"{'/'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}"
                    for err in e.errors()
                ],
            ) from None

    def validate_many(self, arguments: Sequence[Any]) -> list[dict[str, Any]]:
        """`validate` of each, in order (the first that fails raises). Without a pydantic
        model, an object given again is checked once (`validate_many_with_schema`); with
        one, each is validated: the model's validators and default factories are the
        handler's code, which may give equal inputs different outputs."""
        if self.model is None:
            return self._compiled.check_many(self.name, arguments)
        return [self.validate(a) for a in arguments]

    def parse(self, arguments: Mapping[str, Any]) -> Any:
        """What the function receives: a model instance, or the dict."""
        if self.model is None:
            return dict(arguments)
        return self.model.model_validate(arguments)


class Registry:
    """Handlers by name. Workers run the handlers of their registry and nothing else."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def add(self, h: Handler) -> Handler:
        existing = self._handlers.get(h.name)
        if existing is not None and existing.executor != h.executor:
            raise ValueError(f"handler name {h.name!r} is already taken by {existing.executor}")
        self._handlers[h.name] = h
        return h

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def require(self, name: str) -> Handler:
        h = self._handlers.get(name)
        if h is None:
            raise UnknownHandler(name, sorted(self._handlers))
        return h

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __iter__(self) -> Iterator[Handler]:
        return iter(list(self._handlers.values()))

    def __len__(self) -> int:
        return len(self._handlers)


REGISTRY = Registry()


def _undeclared(names: list[str], declared: set[str]) -> str:
    known = ", ".join(sorted(declared)) or "none"
    return f"undeclared arguments: {', '.join(names)} (declared: {known})"


def _schema_of(
    arguments: type[pydantic.BaseModel] | Mapping[str, Any] | None, extra_arguments: bool
) -> Mapping[str, Any]:
    """The JSON schema of a handler's arguments. One that declares its properties refuses
    others (``additionalProperties: false``), unless `extra_arguments` (or the pydantic
    model's ``extra="allow"``, or the schema's own ``additionalProperties``) says otherwise:
    a typo such as ``secnds`` is an error, not an argument silently ignored."""
    if arguments is None:
        return {"type": "object"}
    if isinstance(arguments, type) and issubclass(arguments, pydantic.BaseModel):
        schema = arguments.model_json_schema()
        if arguments.model_config.get("extra") in ("allow", "ignore"):  # set on purpose
            extra_arguments = True
    elif isinstance(arguments, Mapping):
        jsonschema.Draft202012Validator.check_schema(arguments)
        schema = dict(arguments)
    else:
        raise TypeError("arguments= takes a pydantic model class or a JSON schema (a dict)")
    if not extra_arguments and "properties" in schema and "additionalProperties" not in schema:
        schema = {**schema, "additionalProperties": False}
    return schema


def handler(
    name: str,
    *,
    description: str = "",
    arguments: type[pydantic.BaseModel] | Mapping[str, Any] | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    max_attempts: int | None = None,
    timeout: float | None = None,
    registry: Registry | None = None,
    extra_arguments: bool = False,
    schedule: str | timedelta | float | None = None,
    concurrency: int | None = None,
    rate: float | None = None,
    burst: float | None = None,
    limit_key: str | None = None,
) -> Callable[[HandlerFn], Handler]:
    """Register a function as the task definition `name`.

    ``retry_on`` lists the exceptions that are transient: the task is retried with exponential
    backoff up to its max attempts (raising ``taskstatus.Retry`` does the same from anywhere).
    ``max_attempts`` and ``timeout`` (seconds) are defaults a submission may override.
    Arguments the handler does not declare are refused (400 over HTTP) unless
    ``extra_arguments=True``; a handler that declares none takes any JSON object.

    ``schedule`` (a cron expression, or a timedelta / seconds for an interval) makes a
    schedule named after the handler, created or updated when a worker starts. ``concurrency``
    (most running at once) and ``rate`` (most starts per second, bursts of ``burst``) hold
    across every node, per value of the argument ``limit_key`` if given; a worker start
    stores them, and they can be changed at run time (``taskstatus limits``).
    """
    schema = _schema_of(arguments, extra_arguments)
    if isinstance(schedule, str):
        check_cron(schedule)
    elif schedule is not None:
        check_every(schedule.total_seconds() if isinstance(schedule, timedelta) else schedule)
    limits = (
        None
        if concurrency is None and rate is None
        else HandlerLimits(name, concurrency, rate, burst, limit_key).checked()
    )
    model = arguments if isinstance(arguments, type) else None

    def register(fn: HandlerFn) -> Handler:
        first_line = (inspect.getdoc(fn) or "").strip().split("\n")[0]
        h = Handler(
            name=name,
            fn=fn,
            description=description or first_line,
            schema=schema,
            model=model,
            retry_on=retry_on,
            max_attempts=max_attempts,
            timeout=timeout,
            schedule=schedule,
            limits=limits,
        )
        return (registry if registry is not None else REGISTRY).add(h)

    return register
