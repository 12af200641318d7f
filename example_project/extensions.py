"""The site's one :class:`~flask_dispatch.Dispatch`. The host app registers
it; a tenant app uses it to evict itself after its settings change."""

from __future__ import annotations

from flask_dispatch import Dispatch

dispatch = Dispatch()
