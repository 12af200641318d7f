"""The example project through the Flask test client: signup (and what it
checks), isolation, both addressing styles, CSRF, settings, deletion,
eviction, error pages and the tenant directory's own checks."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import typing as t

import pytest

from example_project import DirectoryError, create_app
from example_project.directory import init_directory, list_tenants, remove_tenant
from example_project.extensions import dispatch
from example_project.store import NotesDeleted, NoteStore, remove_files
from flask_dispatch import tenant_evicted

from .conftest import run_workers, wait_for

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


def test_a_note_id_beyond_sqlite_is_not_found(example: Flask) -> None:
    client = example.test_client()
    signup(client, "acme")
    base = "http://acme.localhost:5000"
    csrf = token(client, f"{base}/")
    response = client.post(f"{base}/notes/{2**63}/delete", data={"csrf_token": csrf})
    assert response.status_code == 404


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


# -- Links, names and settings -------------------------------------------------


def test_landing_links_are_built_by_dispatch(example: Flask) -> None:
    client = example.test_client()
    signup(client, "acme", "Acme Inc")
    page = client.get(f"{LOCAL}/").text
    assert 'href="http://acme.localhost:5000/"' in page
    assert 'href="http://localhost:5000/acme/"' in page
    # The owner's settings link, through the tenant's own URL map.
    assert 'href="http://acme.localhost:5000/settings"' in page
    other = example.test_client().get(f"{LOCAL}/").text
    assert "/settings" not in other and 'id="owned"' not in other


def test_names_of_the_host_apps_own_routes_are_refused(example: Flask) -> None:
    response = signup(example.test_client(), "teams")
    assert response.status_code == 400 and "reserved" in response.text


def test_settings_change_is_live_at_once(example: Flask) -> None:
    client = example.test_client()
    signup(client, "acme", "Acme Inc")
    base = "http://acme.localhost:5000"
    assert "Acme Inc" in client.get(f"{base}/").text  # held from now on
    evicted = []

    def record(sender: Flask, name: str, tenant_app: Flask, reason: str) -> None:
        evicted.append((name, reason))

    csrf = token(client, f"{base}/settings")
    with tenant_evicted.connected_to(record, example):
        response = client.post(
            f"{base}/settings",
            data={"display_name": "Acme Ltd", "colour": "#abcdef", "csrf_token": csrf},
        )
    assert response.status_code == 302
    assert evicted == [("acme", "evict")]
    page = client.get(f"{base}/").text
    assert "Acme Ltd" in page and "#abcdef" in page and "Settings saved." in page
    assert "Acme Ltd" in client.get(f"{LOCAL}/acme/").text


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param({"display_name": "", "colour": "#abcdef"}, "1 to 80", id="no name"),
        pytest.param({"display_name": "A", "colour": "red"}, "looks like", id="colour"),
    ],
)
def test_settings_are_checked(example: Flask, form: dict[str, str], message: str) -> None:
    client = example.test_client()
    signup(client, "acme", "Acme Inc")
    base = f"{LOCAL}/acme"
    response = client.post(
        f"{base}/settings", data={**form, "csrf_token": token(client, f"{base}/settings")}
    )
    assert response.status_code == 400 and message in response.text
    assert "Acme Inc" in client.get(f"{base}/").text


# -- Deleting a tenant ----------------------------------------------------------


def delete(client: FlaskClient, name: str, confirm: str | None = None) -> t.Any:
    csrf = token(client, f"{LOCAL}/teams/{name}/delete")
    return client.post(
        f"{LOCAL}/teams/{name}/delete",
        data={"confirm": name if confirm is None else confirm, "csrf_token": csrf},
    )


def test_the_owner_deletes_a_tenant_and_its_notes(example: Flask, tmp_path: Path) -> None:
    client = example.test_client()
    signup(client, "acme", "Acme Inc")
    signup(client, "globex", "Globex")
    base = "http://acme.localhost:5000"
    add_note(client, base, "acme secret")
    note_token = token(client, f"{base}/")
    assert (tmp_path / "data" / "acme.sqlite3").exists()

    assert delete(client, "acme", confirm="acm").status_code == 400
    assert client.get(f"{base}/").status_code == 200
    response = delete(client, "acme")
    assert response.status_code == 302
    landing = client.get(f"{LOCAL}/").text
    assert "Acme Inc is deleted." in landing and "(acme)" not in landing
    assert "site-404" in client.get(f"{base}/").text
    assert "site-404" in client.get(f"{LOCAL}/acme/").text
    # A note sent with a form from before the deletion is refused, not lost.
    for url in (f"{base}/notes", f"{LOCAL}/acme/notes"):
        response = client.post(url, data={"body": "late", "csrf_token": note_token})
        assert response.status_code == 404 and "site-404" in response.text
    assert not list((tmp_path / "data").glob("acme.sqlite3*"))
    assert "Globex" in client.get("http://globex.localhost:5000/").text

    # The name is free again, for a new and empty space.
    assert signup(client, "acme", "New Acme").status_code == 302
    page = client.get(f"{base}/").text
    assert "New Acme" in page and "acme secret" not in page


@pytest.mark.parametrize(
    "signed_up_again", [pytest.param(False, id="gone"), pytest.param(True, id="signed-up-again")]
)
def test_a_stale_instance_of_a_deleted_tenant_says_so(
    example: Flask, tmp_path: Path, signed_up_again: bool
) -> None:
    """What a worker that missed the eviction (no Redis) answers: the space
    is gone, and the note is not reported as added; then it drops the app,
    and its next request finds what the directory says."""
    client = example.test_client()
    signup(client, "acme", "Acme Inc")
    base = "http://acme.localhost:5000"
    add_note(client, base, "acme secret")
    csrf = token(client, f"{base}/")
    # Deleted by another worker: the directory entry and the notes, no evict here.
    with example.app_context():
        remove_tenant("acme")
    remove_files(str(tmp_path / "data" / "acme.sqlite3"))
    if signed_up_again:  # through another worker, whose tenant was evicted there
        example_elsewhere = create_app(example.config)
        assert signup(example_elsewhere.test_client(), "acme", "New Acme").status_code == 302
    response = client.post(f"{base}/notes", data={"body": "late", "csrf_token": csrf})
    assert response.status_code == 410
    assert "Acme Inc was deleted" in response.text and "Note added" not in response.text
    page = client.get(f"{base}/")
    if signed_up_again:
        assert "New Acme" in page.text and "acme secret" not in page.text
    else:
        assert page.status_code == 404
        assert not list((tmp_path / "data").glob("acme.sqlite3*"))


def test_only_the_owner_may_delete(example: Flask) -> None:
    owner = example.test_client()
    signup(owner, "acme")
    stranger = example.test_client()
    assert stranger.get(f"{LOCAL}/teams/acme/delete").status_code == 403
    csrf = token(stranger, f"{LOCAL}/signup")
    response = stranger.post(
        f"{LOCAL}/teams/acme/delete", data={"confirm": "acme", "csrf_token": csrf}
    )
    assert response.status_code == 403 and "site-403" in response.text
    assert owner.get("http://acme.localhost:5000/").status_code == 200
    assert owner.get(f"{LOCAL}/teams/nobody/delete").status_code == 404
    response = owner.post(f"{LOCAL}/teams/acme/delete", data={"confirm": "acme"})
    assert response.status_code == 400, "CSRF"


def test_a_session_from_before_a_deletion_does_not_own_the_next_signup(example: Flask) -> None:
    # Ownership is kept in the signed session cookie, which cannot be taken
    # back: a copy kept from before the deletion must not own the new space.
    alice = example.test_client()
    signup(alice, "foo", "Alice's")
    kept = alice.get_cookie("session")
    assert kept is not None
    assert delete(alice, "foo").status_code == 302
    bob = example.test_client()
    assert signup(bob, "foo", "Bob's").status_code == 302
    alice.set_cookie("session", kept.value)
    assert alice.get(f"{LOCAL}/teams/foo/delete").status_code == 403
    assert 'id="owned"' not in alice.get(f"{LOCAL}/").text
    assert bob.get(f"{LOCAL}/teams/foo/delete").status_code == 200


def test_a_tenant_session_from_before_a_deletion_is_void_in_the_next_signup(
    example: Flask,
) -> None:
    # The tenant's key is derived from its signup too: the old space's
    # session (its CSRF token here; a login in a real app) is not the new one's.
    alice = example.test_client()
    signup(alice, "foo", "Alice's")
    base = "http://foo.localhost:5000"
    kept_token = token(alice, f"{base}/")
    assert delete(alice, "foo").status_code == 302
    assert signup(example.test_client(), "foo", "Bob's").status_code == 302
    late = alice.post(f"{base}/notes", data={"body": "alice was here", "csrf_token": kept_token})
    assert late.status_code == 400
    assert "alice was here" not in alice.get(f"{base}/").text


def test_a_browser_owns_the_spaces_it_signed_up_last(example: Flask) -> None:
    # At most 20 are kept, the oldest going first, whatever their names.
    client = example.test_client()
    names = [f"m{i:02d}" for i in range(19)] + ["zzz", "aaa", "bbb"]
    for name in names:
        assert signup(client, name).status_code == 302
    owned = [n for n in names if client.get(f"{LOCAL}/teams/{n}/delete").status_code == 200]
    assert owned == names[2:]


@pytest.mark.parametrize(
    "evicted_here", [pytest.param(True, id="evicted"), pytest.param(False, id="stale-elsewhere")]
)
@pytest.mark.parametrize(
    "signed_up_again", [pytest.param(False, id="gone"), pytest.param(True, id="signed-up-again")]
)
def test_a_deleted_tenants_instance_cannot_write(
    tmp_path: Path, evicted_here: bool, signed_up_again: bool
) -> None:
    """An instance of a deleted tenant that a process still holds (Redis
    down, or no Redis) fails to write, with its connections pooled or not:
    a note is neither acknowledged and lost with the deleted file, nor
    written into a new signup's file, nor does it bring the file back."""
    path = str(tmp_path / "acme.sqlite3")
    store = NoteStore(path)
    store.add("kept")
    assert store.pooled == 1
    if evicted_here:
        store.close()
    remove_files(path)
    if signed_up_again:
        NoteStore(path).add("the new owner's")
    with pytest.raises(NotesDeleted):
        store.add("lost")
    with pytest.raises(NotesDeleted):
        store.list()
    if signed_up_again:
        assert [row["body"] for row in NoteStore(path).list()] == ["the new owner's"]
    else:
        assert not os.path.exists(path)


# -- Signup checks that the tenant can be made -----------------------------------


def _disk_full(path: str, create: bool = False) -> t.NoReturn:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def _sqlite_full(path: str, create: bool = False) -> t.NoReturn:
    raise sqlite3.OperationalError("database or disk is full")


@pytest.mark.parametrize(
    "cause",
    [
        pytest.param("file", id="data folder is a file"),
        pytest.param("proc", id="data folder refuses files"),
        pytest.param(_disk_full, id="disk full (OSError)"),
        pytest.param(_sqlite_full, id="disk full (SQLite)"),
    ],
)
def test_signup_fails_when_the_tenant_cannot_be_stored(
    example: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cause: t.Any
) -> None:
    # Tests run as root, where a read-only mode does not stop writes: the
    # data folder is made unusable in ways that hold for root too.
    if cause == "file":
        (tmp_path / "not-a-folder").write_text("")
        monkeypatch.setitem(example.config, "TENANT_DATA_DIR", str(tmp_path / "not-a-folder"))
    elif cause == "proc":
        if not os.path.isdir("/proc/self"):
            pytest.skip("needs Linux's /proc")
        monkeypatch.setitem(example.config, "TENANT_DATA_DIR", "/proc")
    else:
        monkeypatch.setattr("example_project.store._open", cause)
    client = example.test_client()
    response = signup(client, "acme", "Acme Inc")
    assert response.status_code == 503
    assert "could not be created" in response.text and "ready" not in response.text
    assert "(acme)" not in client.get(f"{LOCAL}/").text
    assert client.get("http://acme.localhost:5000/").status_code == 404
    monkeypatch.undo()  # the cause goes away: the name was given back
    assert signup(client, "acme", "Acme Inc").status_code == 302
    assert client.get("http://acme.localhost:5000/").status_code == 200


# -- Error pages -------------------------------------------------------------------


def test_the_host_app_has_a_500_page(example: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> t.NoReturn:
        raise RuntimeError("directory unreadable")

    monkeypatch.setattr("example_project.host.list_tenants", broken)
    response = example.test_client().get(f"{LOCAL}/")
    assert response.status_code == 500 and "site-500" in response.text


def test_a_failing_factory_gets_the_host_apps_500_page(
    example: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = example.test_client()
    signup(client, "acme")
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setitem(example.config, "TENANT_DATA_DIR", str(tmp_path / "not-a-folder"))
    with example.app_context():
        dispatch.evict("acme")
    response = client.get("http://acme.localhost:5000/")
    assert response.status_code == 500 and "site-500" in response.text


def test_a_tenant_has_a_500_page(example: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    client = example.test_client()
    signup(client, "acme", "Acme Inc")

    def broken(self: NoteStore) -> t.NoReturn:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(NoteStore, "list", broken)
    for url in ("http://acme.localhost:5000/", f"{LOCAL}/acme/"):
        response = client.get(url)
        assert response.status_code == 500
        assert "tenant-500" in response.text and "Acme Inc" in response.text


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


# -- Redis -----------------------------------------------------------------------------


def test_with_a_redis_url_signup_publishes_and_survives_redis_being_down(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(
        {
            "TENANT_DIRECTORY": str(tmp_path / "t.sqlite3"),
            "TENANT_DATA_DIR": str(tmp_path / "d"),
            "SECRET_KEY": "x",
            "SEED_DEMO_TENANTS": False,
            "DISPATCH_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        }
    )
    bus = app.extensions["dispatch"].bus
    assert bus is not None
    try:
        client = app.test_client()
        assert signup(client, "acme").status_code == 302
        # The sender thread tries, fails and keeps it until Redis is back.
        wait_for(lambda: bus.pending == 1)
        assert client.get("http://acme.localhost:5000/").status_code == 200
    finally:
        bus.close()
