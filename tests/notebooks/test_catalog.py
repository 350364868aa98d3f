"""Template catalogue, sidecar checks, parameter validation, form fields, injection."""

from __future__ import annotations

import pytest

from sciplat.services.notebooks.catalog import TemplateCatalog, default_template_dirs
from sciplat.services.notebooks.params import (
    ParameterError,
    clear_outputs,
    form_fields,
    inject_parameters,
    validate_parameters,
)


@pytest.fixture
def catalog(template_dir):
    return TemplateCatalog([template_dir])


def test_good_and_broken_templates_are_listed(catalog):
    by_name = {t.name: t for t in catalog.templates()}
    assert by_name["lab/square"].ok
    assert by_name["lab/square"].title == "Square a number"
    assert set(by_name["lab/square"].parameters) == {"n", "label", "loud"}
    assert by_name["lab/raises"].ok
    assert "not valid YAML" in by_name["lab/badyaml"].error
    assert "parameter 'a': its default is invalid" in by_name["lab/badschema"].error
    assert "no code cell tagged 'parameters'" in by_name["lab/notags"].error
    assert "no sidecar orphan.yaml" in by_name["lab/orphan"].error
    assert by_name["lab/badyaml"].summary()["status"] == "broken"


def test_catalogue_rereads_changed_files(tmp_path, template_dir):
    d = tmp_path / "col"
    d.mkdir()
    (d / "t.ipynb").write_text((template_dir / "square.ipynb").read_text())
    (d / "t.yaml").write_text("title: One\n")
    catalog = TemplateCatalog([d])
    assert catalog.get("col/t").title == "One"
    (d / "t.yaml").write_text("title: Two, longer\nunexpected: 1\n")
    changed = catalog.get("col/t")
    assert changed.title == "Two, longer"
    assert "unknown keys ['unexpected']" in changed.error


def test_shipped_templates_are_all_valid():
    templates = TemplateCatalog(default_template_dirs()).templates()
    names = {t.name for t in templates}
    assert {"commissioning/visit-image-quality", "commissioning/night-summary",
            "commissioning/detector-health"} <= names  # fmt: skip
    broken = {t.name: t.error for t in templates if not t.ok}
    assert broken == {}


def test_parameters_are_validated_and_named(catalog):
    schemas = catalog.get("lab/square").parameters
    assert validate_parameters(schemas, {}) == {"n": 3, "label": "a", "loud": False}
    assert validate_parameters(schemas, {"n": "12", "loud": "true"})["n"] == 12
    with pytest.raises(ParameterError, match=r"Parameter 'n': -1 is less than the minimum of 0"):
        validate_parameters(schemas, {"n": -1})
    with pytest.raises(ParameterError, match=r"Parameter 'label': 'c' is not one of"):
        validate_parameters(schemas, {"label": "c"})
    with pytest.raises(ParameterError, match=r"Parameter 'n': 'ten' is not of type 'integer'"):
        validate_parameters(schemas, {"n": "ten"})
    with pytest.raises(ParameterError, match=r"Parameter 'visit': unknown parameter"):
        validate_parameters(schemas, {"visit": 1})


def test_injection_replaces_the_tagged_cell_only(catalog):
    template = catalog.get("lab/square")
    nb = inject_parameters(template.notebook(), {"n": 5, "label": "b", "loud": True})
    first = nb["cells"][0]
    assert first["source"] == "# Parameters\nn = 5\nlabel = 'b'\nloud = True"
    assert "injected-parameters" in first["metadata"]["tags"]
    assert nb["cells"][1]["source"].startswith("import os")
    assert template.notebook()["cells"][0]["source"].startswith("n = 1")  # original untouched


def test_injecting_twice_keeps_one_tag_and_clearing_keeps_values(catalog):
    once = inject_parameters(catalog.get("lab/square").notebook(), {"n": 5})
    twice = inject_parameters(once, {"n": 6})
    assert twice["cells"][0]["metadata"]["tags"].count("injected-parameters") == 1
    assert twice["cells"][0]["source"].endswith("n = 6")
    # A notebook submitted as it is (POST /jobs) keeps the values in its parameters cell.
    cleared = clear_outputs(once)
    assert cleared["cells"][0]["source"].endswith("n = 5")
    assert all(c.get("outputs", []) == [] for c in cleared["cells"] if c["cell_type"] == "code")


def test_form_fields_follow_the_schema(catalog):
    fields = {f.name: f for f in form_fields(catalog.get("lab/square").parameters)}
    assert fields["n"].widget == "number"
    assert (fields["n"].minimum, fields["n"].maximum, fields["n"].step) == (0, 1000, "1")
    assert fields["label"].widget == "select"
    assert fields["label"].options == ("a", "b")
    assert fields["loud"].widget == "checkbox"
