"""Synchroniser-token CSRF protection shared by the host and tenant apps."""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, request, session

_FIELD = "csrf_token"


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get(_FIELD)
    if not isinstance(token, str):
        token = session[_FIELD] = secrets.token_urlsafe(32)
    return token


def _check() -> None:
    # No endpoint: the request gets a 404 (or 405) anyway, e.g. a form sent
    # to a tenant that was deleted meanwhile; let it say so.
    if request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint is None:
        return
    expected = session.get(_FIELD)
    sent = request.form.get(_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, sent):
        abort(400, description="The form expired or did not come from this site. Try again.")


def protect(app: Flask) -> None:
    """Refuse unsafe requests without the session's token; expose
    ``csrf_token()`` to templates."""
    app.before_request(_check)
    app.jinja_env.globals["csrf_token"] = csrf_token
