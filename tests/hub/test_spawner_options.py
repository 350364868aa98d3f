"""Spawn options: quotas from groups, the form, and server-side validation (no servers)."""

from __future__ import annotations

import pytest

from sciplat.config import Settings
from sciplat.hub.errors import OptionsError
from sciplat.hub.options import (
    allowed_sizes,
    effective_quota,
    parse_form,
    render_form,
    validate_options,
)
from sciplat.images.catalog import ImageCatalog

SETTINGS = Settings.model_validate(
    {
        "sizes": [
            {"name": "small", "cpu": 1, "memory": "2Gi"},
            {"name": "medium", "cpu": 2, "memory": "4Gi"},
            {"name": "large", "cpu": 4, "memory": "8Gi"},
        ],
        "groups": {
            "users": {"quotas": {"max_size": "small", "named_servers": 1, "dask_cores": 2}},
            "science": {"quotas": {"max_size": "medium", "named_servers": 3}},
            "staff": {"quotas": {"max_size": None}},
        },
        "images": [
            {"name": "recommended", "tag": "recommended"},
            {"name": "r29", "tag": "release", "display_name": "Release 29"},
            {"name": "w2026_47", "tag": "weekly"},
            {"name": "d20261121", "tag": "daily"},
            {"name": "exp-gpu", "tag": "experimental"},
        ],
        "hub": {"default_groups": ["users"]},
    }
)
CATALOG = ImageCatalog(SETTINGS.images)


def names(sizes) -> list[str]:
    return [s.name for s in sizes]


def test_quota_is_the_largest_of_the_groups() -> None:
    quota = effective_quota(SETTINGS, ["users", "science"])
    assert quota.max_size == "medium"
    assert quota.named_servers == 3
    assert quota.dask_cores == 4  # science's default beats users' 2
    assert effective_quota(SETTINGS, ["users", "staff"]).max_size is None
    assert effective_quota(SETTINGS, []) is None
    assert effective_quota(SETTINGS, ["no-such-group"]) is None


def test_allowed_sizes_follow_groups() -> None:
    assert names(allowed_sizes(SETTINGS, ["users"])) == ["small"]
    assert names(allowed_sizes(SETTINGS, ["users", "science"])) == ["small", "medium"]
    assert names(allowed_sizes(SETTINGS, ["staff"])) == ["small", "medium", "large"]
    assert names(allowed_sizes(SETTINGS, [])) == ["small"]
    assert names(allowed_sizes(SETTINGS, [], admin=True)) == ["small", "medium", "large"]


def test_defaults_are_recommended_image_and_smallest_size() -> None:
    options = validate_options({}, SETTINGS, CATALOG, ["science"])
    assert (options.image.name, options.size.name, options.reset) == ("recommended", "small", False)


def test_valid_choice_passes() -> None:
    options = validate_options(
        {"image": "w2026_47", "size": "medium", "reset": True}, SETTINGS, CATALOG, ["science"]
    )
    assert (options.image.name, options.size.name, options.reset) == ("w2026_47", "medium", True)
    assert options.as_user_options() == {"image": "w2026_47", "size": "medium", "reset": True}


@pytest.mark.parametrize(
    ("options", "groups", "message"),
    [
        ({"image": "nope"}, ["users"], "Unknown image 'nope'"),
        ({"image": "../../etc"}, ["users"], "Unknown image"),
        ({"size": "huge"}, ["users"], "Unknown size 'huge'"),
        ({"size": "large"}, ["users", "science"], "above your quota"),
        ({"size": "medium"}, [], "above your quota"),
        ({"size": ["small"]}, ["users"], "Size must be a name"),
        ({"image": {"x": 1}}, ["users"], "Image must be a name"),
        ({"reset": "maybe"}, ["users"], "Reset must be true or false"),
        ({"cmd": "/bin/sh"}, ["users"], "Unknown spawn option"),
    ],
)
def test_forged_values_are_refused(options, groups, message) -> None:
    with pytest.raises(OptionsError) as info:
        validate_options(options, SETTINGS, CATALOG, groups)
    assert message in info.value.jupyterhub_message
    assert info.value.status_code == 400


def test_parse_form_unpacks_lists_and_checkbox() -> None:
    assert parse_form({"image": ["r29"], "size": ["small"], "reset": ["on"]}) == {
        "image": "r29",
        "size": "small",
        "reset": True,
    }
    assert parse_form({"image": ["r29"], "_xsrf": ["token"]}) == {"image": "r29"}


def test_form_groups_images_by_tag_and_shows_only_allowed_sizes() -> None:
    html = render_form(SETTINGS, CATALOG, ["users", "science"], previous={"image": "r29"})
    labels = ["Recommended", "Releases", "Weekly builds", "Daily builds", "Experimental"]
    positions = [html.index(f'<optgroup label="{label}">') for label in labels]
    assert positions == sorted(positions)
    assert 'value="r29" selected' in html
    assert 'value="small" checked' in html
    assert 'value="medium"' in html
    assert 'value="large"' not in html
    assert 'name="reset"' in html


def test_form_escapes_display_names() -> None:
    settings = SETTINGS.model_copy(deep=True)
    settings.images[1].display_name = "<script>alert(1)</script>"
    html = render_form(settings, ImageCatalog(settings.images), ["users"])
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html
