"""The code on docs/domains.rst, run as the page shows it."""

from __future__ import annotations

import importlib.util
import pathlib
import typing as t

from .conftest import call

EXAMPLE = pathlib.Path(__file__).parent.parent / "docs" / "examples" / "custom_domains.py"


def load() -> t.Any:
    spec = importlib.util.spec_from_file_location("custom_domains", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_includes_the_example() -> None:
    page = EXAMPLE.parent.parent / "domains.rst"
    assert ".. literalinclude:: examples/custom_domains.py" in page.read_text()


def test_custom_domains_example() -> None:
    app = load().app
    assert call(app, host="acme.com").body == "acme at http://acme.com/"
    assert call(app, host="www.acme.com:8080").body == "acme at http://www.acme.com:8080/"
    assert call(app, host="acme.example.com").body == "acme at http://acme.example.com/"
    assert call(app, host="other.org").body == "http://acme.example.com/"  # the landing page
    assert call(app, host="nobody.example.com").status == 404
