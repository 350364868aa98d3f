"""Template parameters: JSON Schema checks, form fields, and injection into the notebook.

A sidecar declares each parameter as a JSON Schema (``type``, ``default``, ``enum``,
``minimum``/``maximum``, ``description``...), as Times Square does. Values are checked before
anything runs; the message names the field. The first code cell tagged ``parameters`` is then
replaced by plain assignments (``visit = 1234``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import keyword
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PARAMETER_TYPES",
    "FormField",
    "ParameterError",
    "check_parameter_schema",
    "clear_outputs",
    "form_fields",
    "inject_parameters",
    "params_digest",
    "validate_parameters",
]

#: Types a parameter may have (what a form and a Python assignment can carry).
PARAMETER_TYPES = ("string", "integer", "number", "boolean")


def _first_error(schema: dict[str, Any], value: Any) -> Any:
    """The most relevant JSON Schema error of *value*, or None (jsonschema imported lazily: it
    takes seconds to import, which would slow the API service's start-up)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    return best_match(Draft202012Validator(schema).iter_errors(value))


class ParameterError(ValueError):
    """Parameters that do not satisfy the template's schema; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"Parameter {field!r}: {message}")
        self.field = field


def check_parameter_schema(name: str, schema: Any) -> None:
    """Raise ValueError when a sidecar's parameter declaration is unusable."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"parameter name {name!r} is not a Python identifier")
    if not isinstance(schema, dict):
        raise ValueError(f"parameter {name!r}: its schema must be a mapping")
    from jsonschema import Draft202012Validator, SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"parameter {name!r}: invalid JSON Schema: {exc.message}") from exc
    if schema.get("type") not in PARAMETER_TYPES:
        raise ValueError(
            f"parameter {name!r}: type must be one of {', '.join(PARAMETER_TYPES)}, "
            f"not {schema.get('type')!r}"
        )
    if "default" not in schema:
        raise ValueError(f"parameter {name!r} has no default")
    error = _first_error(schema, schema["default"])
    if error is not None:
        raise ValueError(f"parameter {name!r}: its default is invalid: {error.message}")


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Form and query-string values arrive as text; turn them into the declared type."""
    if not isinstance(value, str):
        return value
    kind = schema.get("type")
    text = value.strip()
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
    except ValueError:
        return value  # the schema check reports it with the field name
    if kind == "boolean" and text.lower() in ("true", "false", "1", "0", "on", "off"):
        return text.lower() in ("true", "1", "on")
    return value


def validate_parameters(
    schemas: dict[str, dict[str, Any]], given: dict[str, Any] | None
) -> dict[str, Any]:
    """The full parameter set (defaults filled in), or :class:`ParameterError`."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(schemas))
    if unknown:
        raise ParameterError(
            unknown[0], f"unknown parameter (this template takes: {', '.join(schemas) or 'none'})"
        )
    values: dict[str, Any] = {}
    for name, schema in schemas.items():
        value = _coerce(given[name], schema) if name in given else schema["default"]
        if isinstance(value, float) and value != value:  # NaN cannot be a parameter
            raise ParameterError(name, "NaN is not a valid value")
        error = _first_error(schema, value)
        if error is not None:
            raise ParameterError(name, error.message)
        values[name] = value
    return values


def params_digest(values: dict[str, Any]) -> str:
    """A stable digest of a parameter set (part of the result cache key)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def clear_outputs(notebook: dict[str, Any]) -> dict[str, Any]:
    """A copy of *notebook* with every code cell's outputs and execution count cleared."""
    nb = copy.deepcopy(notebook)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


def inject_parameters(notebook: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of *notebook* whose first ``parameters``-tagged code cell assigns *values*.

    Outputs are cleared so a run starts from a clean notebook. Without a tagged cell the
    assignments go in a new first cell (a template with parameters must have one; the catalogue
    checks that).
    """
    nb = clear_outputs(notebook)
    lines = [f"{name} = {value!r}" for name, value in values.items()]
    source = "# Parameters\n" + "\n".join(lines)
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.get("cell_type") == "code" and "parameters" in tags:
            cell["source"] = source
            if "injected-parameters" not in tags:
                cell["metadata"]["tags"] = [*tags, "injected-parameters"]
            return nb
    if values:
        nb.setdefault("cells", []).insert(
            0,
            {
                "cell_type": "code",
                "metadata": {"tags": ["injected-parameters"]},
                "source": source,
                "outputs": [],
                "execution_count": None,
            },
        )
    return nb


@dataclass(frozen=True)
class FormField:
    """How one parameter is shown on the run form."""

    name: str
    label: str
    widget: str  # "select", "checkbox", "number", "date", "text"
    default: Any
    description: str = ""
    options: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: str = "any"
    required: bool = True


def form_fields(schemas: dict[str, dict[str, Any]]) -> list[FormField]:
    """The run form for a template, generated from its parameter schemas."""
    fields = []
    for name, schema in schemas.items():
        kind = schema.get("type")
        if "enum" in schema:
            widget = "select"
        elif kind == "boolean":
            widget = "checkbox"
        elif kind in ("integer", "number"):
            widget = "number"
        elif schema.get("format") == "date":
            widget = "date"
        else:
            widget = "text"
        fields.append(
            FormField(
                name=name,
                label=schema.get("title") or name,
                widget=widget,
                default=schema.get("default"),
                description=schema.get("description", ""),
                options=tuple(schema.get("enum", ())),
                minimum=schema.get("minimum", schema.get("exclusiveMinimum")),
                maximum=schema.get("maximum", schema.get("exclusiveMaximum")),
                step="1" if kind == "integer" else "any",
            )
        )
    return fields
