"""A handler's Submit form, generated from the JSON schema of its arguments, and back.

Each property becomes a labelled control: a number field for integers and numbers, a
checkbox for booleans, a select for enums, a text field for strings and a JSON text area for
anything else. Values that do not parse are passed on as text, so that the handler's own
validation says what is wrong, in its words, next to the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["FormField", "errors_by_field", "fields_of", "parse_form"]

PREFIX = "arg."
BOOL_MARK = "bool."


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    label: str
    control: str  # number, integer, checkbox, select, text, json
    description: str = ""
    default: Any = None
    required: bool = False
    options: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def input_name(self) -> str:
        return PREFIX + self.name

    def shown(self, entered: Mapping[str, str]) -> str:
        """The text the control shows: what was entered, else the default."""
        if self.input_name in entered:
            return entered[self.input_name]
        if self.default is None:
            return ""
        if self.control == "json":
            return orjson.dumps(self.default).decode()
        return str(self.default)

    def checked(self, entered: Mapping[str, str], submitted: bool) -> bool:
        if submitted:
            return self.input_name in entered
        return bool(self.default)


def _type_of(spec: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """The one JSON type of a property (of a nullable one: the type besides null), and the
    schema that has its bounds (the anyOf branch of that type)."""
    kind = spec.get("type")
    if isinstance(kind, str):
        return kind, spec
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        return (others[0] if len(others) == 1 else None), spec
    options = spec.get("anyOf") or spec.get("oneOf")
    if isinstance(options, list) and all(isinstance(o, Mapping) for o in options):
        branches = [o for o in options if o.get("type") != "null"]
        if len(branches) == 1 and isinstance(branches[0].get("type"), str):
            return str(branches[0]["type"]), branches[0]
    return None, spec


def fields_of(schema: Mapping[str, Any]) -> list[FormField]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    required = set(schema.get("required") or ())
    found = []
    for name, spec in properties.items():
        if not isinstance(spec, Mapping):
            continue
        kind, bounds = _type_of(spec)
        enum = spec.get("enum")
        control = {"integer": "integer", "number": "number", "boolean": "checkbox"}.get(
            kind or "", "text" if kind == "string" else "json"
        )
        if isinstance(enum, list) and all(isinstance(v, str) for v in enum):
            control = "select"
        found.append(
            FormField(
                name=str(name),
                label=str(spec.get("title") or name),
                control=control,
                description=str(spec.get("description") or ""),
                default=spec.get("default"),
                required=name in required,
                options=tuple(str(v) for v in enum) if isinstance(enum, list) else (),
                minimum=bounds.get("minimum"),
                maximum=bounds.get("maximum"),
            )
        )
    return found


def _number(text: str, integer: bool) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    if integer:
        return text  # not an integer: the handler's validation says so
    try:
        return float(text)
    except ValueError:
        return text


def parse_form(
    fields: list[FormField], form: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The arguments the form stands for, and errors found before the handler sees them
    (JSON that does not parse). An empty field is left out: its default applies."""
    arguments: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        if f.control == "checkbox":
            if BOOL_MARK + f.name in form:
                arguments[f.name] = f.input_name in form
            continue
        text = form.get(f.input_name, "").strip()
        if text == "":
            continue
        if f.control in ("integer", "number"):
            arguments[f.name] = _number(text, f.control == "integer")
        elif f.control == "json":
            try:
                arguments[f.name] = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                errors[f.name] = f"not valid JSON ({e})"
        else:
            arguments[f.name] = text
    return arguments, errors


def errors_by_field(
    messages: list[str], fields: list[FormField]
) -> tuple[dict[str, str], list[str]]:
    """A handler's validation messages ("seconds: Input should be ...") by field name, and
    the ones that name no field of the form."""
    names = {f.name for f in fields}
    by_field: dict[str, str] = {}
    other: list[str] = []
    for message in messages:
        where, sep, text = message.partition(": ")
        head = where.split("/")[0]
        if sep and head in names:
            by_field[head] = f"{by_field[head]}; {text}" if head in by_field else text
        else:
            other.append(message)
    return by_field, other
