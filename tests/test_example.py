"""The example project through the Flask test client: signup, isolation,
both addressing styles, CSRF, eviction."""

from __future__ import annotations

import os
import re
import sqlite3
import typing as t

import pytest

from example_project import DirectoryError, create_app
from example_project.directory import init_directory, list_tenants, remove_tenant
from flask_dispatch import tenant_evicted

from .conftest import run_workers

if t.TYPE_CHECKING:
    from pathlib import Path

    from flask import Flask
    from flask.testing import FlaskClient

LOCAL = "http://localhost:5000"


@pytest.fixture
def example(tmp_path: Path) -> Flask:
    return create_app(
        {
            "TENANT_DIRECTORY": str(tmp_path / "tenants.sqlite3"),
            "TENANT_DATA_DIR": str(tmp_path / "data"),
            "SECRET_KEY": "test",
            "SEED_DEMO_TENANTS": False,
        }
    )


def token(client: FlaskClient, url: str) -> str:
    page = client.get(url).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def signup(client: FlaskClient, name: str, display: str = "Team") -> t.Any:
    csrf = token(client, f"{LOCAL}/signup")
    return client.post(
        f"{LOCAL}/signup",
        data={"name": name, "display_name": display, "colour": "#123456", "csrf_token": csrf},
    )


def add_note(client: FlaskClient, base: str, body: str) -> t.Any:
    csrf = token(client, f"{base}/")
    return client.post(f"{base}/notes", data={"body": body, "csrf_token": csrf})


def test_seeds_demo_tenants(tmp_path: Path) -> None:
    app = create_app(
        {
            "TENANT_DIRECTORY": str(tmp_path / "t.sqlite3"),
            "TENANT_DATA_DIR": str(tmp_path / "d"),
            "SECRET_KEY": "x",
        }
    )
    client = app.test_client()
    landing = client.get(f"{LOCAL}/").text
    assert "Acme Corporation" in landing and "http://acme.localhost:5000/" in landing
    assert "Acme Corporation" in client.get("http://acme.localhost:5000/").text


def test_signup_makes_tenant_live_at_once(example: Flask) -> None:
    client = example.test_client()
    assert client.get("http://acme.localhost:5000/").status_code == 404  # miss remembered
    response = signup(client, "acme", "Acme Inc")
    assert response.status_code == 302
    page = client.get("http://acme.localhost:5000/")
    assert page.status_code == 200 and "Acme Inc" in page.text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("a.b", "lowercase letters", id="dot"),
        pytest.param("-acme", "lowercase letters", id="hyphen"),
        pytest.param("a" * 64, "lowercase letters", id="long"),
        pytest.param("www", "reserved", id="reserved"),
        pytest.param("signup", "reserved", id="host-route"),
        pytest.param("static", "reserved", id="static"),
    ],
)
def test_signup_refuses_bad_names(example: Flask, name: str, message: str) -> None:
    response = signup(example.test_client(), name)
    assert response.status_code == 400 and message in response.text


def test_duplicate_signup_refused(example: Flask) -> None:
    client = example.test_client()
    assert signup(client, "acme").status_code == 302
    response = signup(client, "ACME")
    assert response.status_code == 400 and "is taken" in response.text


def test_signup_needs_csrf_token(example: Flask) -> None:
    response = example.test_client().post(
        f"{LOCAL}/signup", data={"name": "acme", "display_name": "A", "colour": "#123456"}
    )
    assert response.status_code == 400 and "site-400" in response.text


def test_notes_are_isolated_and_shared_across_addressing(example: Flask) -> None:
    client = example.test_client()
    signup(client, "acme")
    signup(client, "globex")
    assert add_note(client, "http://acme.localhost:5000", "acme secret").status_code == 302
    assert "acme secret" not in client.get("http://globex.localhost:5000/").text
    by_path = client.get(f"{LOCAL}/acme/").text
    assert "acme secret" in by_path and 'action="/acme/notes"' in by_path
    assert "acme secret" not in client.get(f"{LOCAL}/globex/").text


def test_note_needs_csrf_token(example: Flask) -> None:
    client = example.test_client()
    signup(client, "acme")
    response = client.post("http://acme.localhost:5000/notes", data={"body": "x"})
    assert response.status_code == 400


def test_unknown_tenant_gets_site_404(example: Flask) -> None:
    client = example.test_client()
    assert "site-404" in client.get("http://nobody.localhost:5000/").text
    assert "site-404" in client.get(f"{LOCAL}/nobody/").text


def test_eviction_closes_tenant_database(tmp_path: Path) -> None:
    app = create_app(
        {
            "TENANT_DIRECTORY": str(tmp_path / "t.sqlite3"),
            "TENANT_DATA_DIR": str(tmp_path / "d"),
            "SECRET_KEY": "x",
            "DISPATCH_MAX_INSTANCES": 1,
        }
    )
    client = app.test_client()
    stores = []

    def record(sender: Flask, name: str, tenant_app: Flask, reason: str) -> None:
        stores.append((name, reason, tenant_app.extensions["notes"]))

    with tenant_evicted.connected_to(record, app):
        add_note(client, "http://acme.localhost:5000", "kept")
        add_note(client, "http://globex.localhost:5000", "other")
        page = client.get("http://acme.localhost:5000/").text
    assert [(name, reason) for name, reason, _ in stores] == [
        ("acme", "capacity"),
        ("globex", "capacity"),
    ]
    assert all(store.closed and store.pooled == 0 for _, _, store in stores)
    assert "kept" in page  # recreated from its own database, nothing lost


# -- The tenant directory -----------------------------------------------------------


def _foreign_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE other (x)")
    connection.commit()
    connection.close()


def _truncated_directory(path: Path) -> None:
    init_directory(str(path), seed_demo=False)
    connection = sqlite3.connect(path)
    with connection:
        connection.executemany(
            "INSERT INTO tenant (name, display_name, colour) VALUES (?, ?, ?)",
            [(f"t{i}", "x" * 500, "#000000") for i in range(200)],
        )
    connection.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p.write_bytes(b""), "is empty", id="0 bytes"),
        pytest.param(lambda p: p.write_bytes(b"junk" * 1024), "cannot be read", id="junk"),
        pytest.param(_truncated_directory, "damaged|cannot be read", id="truncated"),
        pytest.param(_foreign_database, "not a tenant directory", id="other database"),
    ],
)
def test_a_broken_directory_stops_startup_naming_the_file(
    tmp_path: Path, make: t.Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "tenants.sqlite3"
    make(path)
    before = path.read_bytes()
    with pytest.raises(DirectoryError, match=message) as caught:
        create_app({"TENANT_DIRECTORY": str(path), "TENANT_DATA_DIR": str(tmp_path / "d")})
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before, "left as it was, not re-seeded"


def test_demo_tenants_are_seeded_into_a_new_directory_only(tmp_path: Path) -> None:
    config = {
        "TENANT_DIRECTORY": str(tmp_path / "t.sqlite3"),
        "TENANT_DATA_DIR": str(tmp_path / "d"),
        "SECRET_KEY": "x",
    }
    app = create_app(config)
    with app.app_context():
        assert [t.name for t in list_tenants()] == ["acme", "globex"]
        remove_tenant("acme")
        remove_tenant("globex")
    with create_app(config).app_context():
        assert list_tenants() == []


def test_workers_starting_together_make_one_directory(tmp_path: Path) -> None:
    path = str(tmp_path / "t.sqlite3")
    errors = run_workers(8, lambda i: init_directory(path, seed_demo=True))
    assert errors == []
    assert sorted(os.listdir(tmp_path)) == ["t.sqlite3"]
    with create_app({"TENANT_DIRECTORY": path, "SECRET_KEY": "x"}).app_context():
        assert [t.name for t in list_tenants()] == ["acme", "globex"]
