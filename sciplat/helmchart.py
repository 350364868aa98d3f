"""The Python side of the Helm chart (``helm/sciplat``): values schema, offline render, checks.

``values.schema.json`` is generated, never hand-edited: the chart's own keys come from
``helm/sciplat/values.schema.base.yaml`` (with descriptions, ``additionalProperties: false``)
and the ``sciplat:`` key is exactly :class:`sciplat.config.Settings` (the one configuration
schema), so a ``values.yaml`` typo fails at ``helm install`` naming the key. Regenerate with
``sciplat helm schema --write`` whenever ``sciplat/config.py`` changes.

Rendering uses Helm's own template engine (the ``helm-python-sdk`` wheel ships Helm's library)
and manifests are checked with ``kubernetes-validate`` in strict mode. Both are dev
dependencies; nothing here contacts a cluster.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import BaseModel, ValidationError

from sciplat.config import Settings

__all__ = [
    "CHART_DIR",
    "KUBE_VERSION",
    "manifests",
    "register",
    "render",
    "rendered_settings",
    "validate_manifest",
    "values_schema",
]


def _chart_dir() -> Path:
    """The chart of the checkout sciplat runs from, else of the current folder (an installed copy
    of sciplat carries no chart: operators run ``sciplat helm`` from a checkout)."""
    beside = Path(__file__).resolve().parent.parent / "helm" / "sciplat"
    return beside if beside.is_dir() else Path.cwd() / "helm" / "sciplat"


CHART_DIR = _chart_dir()
#: Oldest Kubernetes the chart supports (z2jh 4 needs >= 1.32); manifests are validated for it.
KUBE_VERSION = "1.32.0"
_BYTES = {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([KMGTkmgt]i?)?[Bb]?\s*$"}


def _models(model: type[BaseModel], seen: dict[str, type[BaseModel]]) -> None:
    """Collect *model* and every pydantic model its fields use, by schema title."""
    if model.__name__ in seen:
        return
    seen[model.__name__] = model
    for field in model.model_fields.values():
        for arg in _type_args(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)


def _type_args(annotation: Any) -> list[Any]:
    from typing import get_args

    out = [annotation]
    for arg in get_args(annotation):
        out.extend(_type_args(arg))
    return out


def _accept_before_validated(defs: dict[str, Any]) -> None:
    """Fields with a ``mode="before"`` validator (``"4G"`` -> bytes) also accept strings."""
    models: dict[str, type[BaseModel]] = {}
    _models(Settings, models)
    for name, model in models.items():
        schema = defs.get(name)
        if schema is None:
            continue
        for dec in model.__pydantic_decorators__.field_validators.values():
            if dec.info.mode != "before":
                continue
            for field in dec.info.fields:
                prop = schema.get("properties", {}).get(field)
                if prop is not None and prop.get("type") == "integer":
                    extra = {
                        k: prop.pop(k) for k in ("title", "description", "default") if k in prop
                    }
                    schema["properties"][field] = {"anyOf": [prop, _BYTES], **extra}


def values_schema() -> dict[str, Any]:
    """The chart's ``values.schema.json``: its own keys plus ``sciplat:`` = Settings."""
    base = yaml.safe_load((CHART_DIR / "values.schema.base.yaml").read_text())
    settings = Settings.model_json_schema(mode="validation")
    defs = settings.pop("$defs", {})
    defs["Settings"] = settings
    _accept_before_validated(defs)
    schema = copy.deepcopy(base)
    clash = sorted(set(defs) & set(schema.get("$defs", {})))
    if clash:
        raise ValueError(f"values.schema.base.yaml $defs clash with sciplat's models: {clash}")
    schema["$defs"] = dict(sorted({**schema.get("$defs", {}), **defs}.items()))
    return schema


def schema_text() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=False) + "\n"


def render(
    values: dict[str, Any] | None = None,
    *,
    name: str = "sciplat",
    namespace: str = "sciplat",
    chart_dir: Path = CHART_DIR,
) -> dict[str, str]:
    """Render the chart offline with Helm's engine: template path -> manifest text.

    The ``jupyterhub`` and ``dask-gateway`` subcharts are rendered only when they were fetched
    into ``charts/`` (``helm dependency build``); offline they are absent and skipped.
    Raises ``helm_python.HelmValuesError`` (schema, naming the key) or ``HelmRenderError``.
    """
    import helm_python

    with helm_python.Chart.load(chart_dir) as chart:
        return chart.render(values or {}, name=name, namespace=namespace, is_install=True)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """The Kubernetes objects in *rendered* (NOTES.txt and empty documents left out)."""
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append(doc)
    return out


def validate_manifest(doc: dict[str, Any], kube_version: str = KUBE_VERSION) -> None:
    """Validate one object against the Kubernetes JSON schemas (strict: unknown fields fail).

    Uses kubernetes-validate's schemas and its validator construction, cached per kind
    (``kubernetes_validate.validate`` re-reads the 10 MB definitions file on every call).
    Raises ``jsonschema.ValidationError`` naming the path of the offending field.
    """
    import re

    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    _validator(kube_version, doc["kind"].lower(), api).validate(doc)


@functools.cache
def _validator(kube_version: str, kind: str, api: str) -> Any:
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    version = [
        v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(kube_version)
    ][-1]
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    schema = utils.schema_contents(f"{schema_dir}/{kind}-{api}.json", kube_version)
    registry = Resource.from_contents(_definitions(schema_dir, kube_version)) @ (
        Resource.from_contents(schema) @ Registry()
    )
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definitions(schema_dir: str, kube_version: str) -> Any:
    from kubernetes_validate import utils

    return utils.schema_contents(f"{schema_dir}/_definitions.json", kube_version)


def rendered_settings(docs: list[dict[str, Any]]) -> Settings:
    """The settings.json the chart rendered, validated by sciplat's own model.

    The values schema checks each key; this also checks what JSON Schema cannot express
    (a group's ``max_size`` naming a size, one "recommended" image, ...), before install.
    """
    for doc in docs:
        if doc.get("kind") == "Secret" and "settings.json" in doc.get("stringData", {}):
            return Settings.model_validate_json(doc["stringData"]["settings.json"])
    raise LookupError("the rendered chart has no settings Secret")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_values(files: list[Path]) -> dict[str, Any]:
    """Merge values files left to right, like ``helm -f a.yaml -f b.yaml``."""
    values: dict[str, Any] = {}
    for path in files:
        values = _deep_merge(values, yaml.safe_load(Path(path).read_text()) or {})
    return values


def register(cli: click.Group) -> None:
    @cli.group("helm")
    def helm() -> None:
        """The Kubernetes Helm chart (helm/sciplat)."""

    @helm.command("schema")
    @click.option("--write", is_flag=True, help="Write helm/sciplat/values.schema.json.")
    @click.option("--check", is_flag=True, help="Fail if the committed schema is stale.")
    def schema_cmd(write: bool, check: bool) -> None:
        """Print (or write/check) the values schema generated from sciplat's Settings."""
        text = schema_text()
        target = CHART_DIR / "values.schema.json"
        if check:
            if not target.exists() or target.read_text() != text:
                raise click.ClickException(f"{target} is stale; run `sciplat helm schema --write`")
            click.echo(f"{target} is up to date")
        elif write:
            target.write_text(text)
            click.echo(f"wrote {target}")
        else:
            click.echo(text, nl=False)

    @helm.command("dockerfiles")
    @click.option("--write", is_flag=True, help="(Re)write images/*/Dockerfile.")
    def dockerfiles_cmd(write: bool) -> None:
        """Check (or write) the images' Dockerfiles against their environment specs."""
        from sciplat.images import dockerfiles

        if write:
            for path in dockerfiles.write():
                click.echo(f"wrote {path}")
        problems = dockerfiles.check()
        if problems:
            raise click.ClickException("; ".join(problems) + " (run with --write)")
        click.echo(f"{len(dockerfiles.dockerfiles())} Dockerfiles match their specs")

    @helm.command("render")
    @click.option(
        "-f",
        "--values",
        "files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Values file (repeatable).",
    )
    @click.option("--name", default="sciplat", show_default=True, help="Release name.")
    @click.option("--namespace", default="sciplat", show_default=True)
    @click.option(
        "--validate/--no-validate",
        default=True,
        show_default=True,
        help="Check every manifest against the Kubernetes schemas (strict).",
    )
    def render_cmd(files: tuple[Path, ...], name: str, namespace: str, validate: bool) -> None:
        """Render the chart offline (like `helm template`) and print the manifests."""
        import helm_python

        try:
            rendered = render(load_values(list(files)), name=name, namespace=namespace)
        except helm_python.HelmError as exc:
            raise click.ClickException(str(exc)) from exc
        docs = manifests(rendered)
        try:
            rendered_settings(docs)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
            )
            raise click.ClickException(f"values.sciplat: {problems}") from exc
        if validate:
            for doc in docs:
                try:
                    validate_manifest(doc)
                except Exception as exc:
                    raise click.ClickException(
                        f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {exc}"
                    ) from exc
        click.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)
