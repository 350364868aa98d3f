"""Spawn options: what a user may pick (image, size, reset), the form, and server-side checks.

Every value is re-validated on the server whether it came from the form, the REST API or a
remembered earlier spawn: a forged value is refused with a clear message, never spawned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from sciplat.config import QuotaConfig, Settings, SizeConfig
from sciplat.hub.errors import OptionsError
from sciplat.images.catalog import TAG_LABELS, ImageCatalog, LabImage

__all__ = [
    "LabOptions",
    "allowed_sizes",
    "effective_quota",
    "parse_form",
    "render_form",
    "validate_options",
]

KNOWN_KEYS = frozenset({"image", "size", "reset"})
_TRUE = {True, "on", "true", "True", "1", "yes"}
_FALSE = {False, "off", "false", "False", "0", "no", "", None}
_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


@dataclass(frozen=True)
class LabOptions:
    """Validated options of one spawn."""

    image: LabImage
    size: SizeConfig
    reset: bool = False

    def as_user_options(self) -> dict[str, Any]:
        return {"image": self.image.name, "size": self.size.name, "reset": self.reset}


def effective_quota(
    settings: Settings, groups: Iterable[str], *, admin: bool = False
) -> QuotaConfig | None:
    """The quotas a member of *groups* gets: per field, the largest of the groups' values.

    ``max_size`` None (no limit) wins over any named size. Returns None for a user in no
    configured group (they get the smallest size and nothing else). Admins get no size limit.
    """
    quotas = [settings.groups[g].quotas for g in groups if g in settings.groups]
    if not quotas:
        return QuotaConfig(max_size=None) if admin else None
    order = [s.name for s in settings.sizes]
    merged: dict[str, Any] = {}
    for field in QuotaConfig.model_fields:
        if field == "max_size":
            values = [q.max_size for q in quotas]
            merged[field] = None if admin or None in values else max(values, key=order.index)
        else:
            merged[field] = max(getattr(q, field) for q in quotas)
    return QuotaConfig(**merged)


def allowed_sizes(
    settings: Settings, groups: Iterable[str], *, admin: bool = False
) -> list[SizeConfig]:
    """Sizes a member of *groups* may choose, smallest first (config order)."""
    quota = effective_quota(settings, groups, admin=admin)
    if quota is None:
        return settings.sizes[:1]
    if quota.max_size is None:
        return list(settings.sizes)
    names = [s.name for s in settings.sizes]
    return settings.sizes[: names.index(quota.max_size) + 1]


def parse_form(form_data: Mapping[str, list[Any]]) -> dict[str, Any]:
    """Turn the spawn form's POST body (lists of strings) into ``user_options``."""
    options: dict[str, Any] = {}
    for key, values in form_data.items():
        if key == "_xsrf":  # JupyterHub's own form token, not an option
            continue
        value = values[-1] if isinstance(values, list) and values else values
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        options[key] = value
    if "reset" in options:
        options["reset"] = options["reset"] in _TRUE
    return options


def validate_options(
    user_options: Mapping[str, Any],
    settings: Settings,
    catalog: ImageCatalog,
    groups: Iterable[str],
    *,
    admin: bool = False,
) -> LabOptions:
    """Check ``user_options`` against the catalogue and the user's quotas.

    Missing values take defaults (the recommended image, the smallest allowed size).
    Raises :class:`OptionsError` (HTTP 400) naming the bad value and what is allowed.
    """
    unknown = sorted(set(user_options) - KNOWN_KEYS)
    if unknown:
        raise OptionsError(f"Unknown spawn option(s) {unknown}; allowed: {sorted(KNOWN_KEYS)}.")
    groups = list(groups)
    sizes = allowed_sizes(settings, groups, admin=admin)

    image_name = _chosen_name(user_options, "image", catalog.default().name)
    try:
        image = catalog.get(image_name)
    except KeyError:
        raise OptionsError(
            f"Unknown image {image_name!r}. Available: {', '.join(catalog.names())}."
        ) from None

    size_name = _chosen_name(user_options, "size", sizes[0].name)
    try:
        size = settings.size(size_name)
    except KeyError:
        raise OptionsError(
            f"Unknown size {size_name!r}. Available to you: {', '.join(s.name for s in sizes)}."
        ) from None
    if size not in sizes:
        raise OptionsError(
            f"Size {size_name!r} is above your quota (largest allowed: {sizes[-1].name!r}, "
            f"from your groups {groups or 'none'})."
        )

    reset = user_options.get("reset", False)
    if reset not in _TRUE and reset not in _FALSE:
        raise OptionsError(f"Reset must be true or false, not {reset!r}.")
    return LabOptions(image=image, size=size, reset=reset in _TRUE)


def render_form(
    settings: Settings,
    catalog: ImageCatalog,
    groups: Iterable[str],
    *,
    admin: bool = False,
    previous: Mapping[str, Any] | None = None,
) -> str:
    """The HTML of the spawn page's options (JupyterHub wraps it in its <form>)."""
    previous = previous or {}
    sizes = allowed_sizes(settings, groups, admin=admin)
    size_names = [s.name for s in sizes]
    image_names = catalog.names()
    return _TEMPLATES.get_template("options_form.html").render(
        groups=[(TAG_LABELS[tag], images) for tag, images in catalog.by_tag()],
        sizes=sizes,
        selected_image=(
            previous.get("image")
            if previous.get("image") in image_names
            else catalog.default().name
        ),
        selected_size=(
            previous.get("size") if previous.get("size") in size_names else size_names[0]
        ),
    )


def _chosen_name(user_options: dict[str, Any], key: str, default: str) -> str:
    """The name submitted for *key* (image, size), or *default* when none was."""
    name = user_options.get(key) or default
    if not isinstance(name, str):
        raise OptionsError(f"{key.capitalize()} must be a name, not {name!r}.")
    return name
