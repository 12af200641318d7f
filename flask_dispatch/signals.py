"""Signals sent when tenant apps are created and evicted.

Like Flask's own signals they use blinker. The sender is the host app;
receivers get ``name`` and ``tenant_app`` keyword arguments, and evictions
also get ``reason``.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent after a factory built a tenant app and before any request is served
#: by it, on the creation thread and inside the host app's app context.
#: Keyword arguments: ``name``, ``tenant_app``. A receiver that raises fails
#: the creation, which is then not remembered, and ``tenant_evicted`` follows
#: for the app (``"evict"``), so that receivers that ran before it can
#: release what they opened for it.
tenant_created = _signals.signal("tenant-created")

#: Sent after a tenant app left the registry (or a ``tenant_created``
#: receiver raised for it), outside the registry's lock,
#: inside the host app's app context and, for a Flask tenant, the tenant's.
#: Keyword arguments: ``name``, ``tenant_app`` and ``reason``, one of
#: ``"capacity"``, ``"idle"``, ``"max_age"`` or ``"evict"``. Requests already
#: inside the app keep running, so release resources in a way that lets them
#: finish. Each receiver runs even when another raised; exceptions are
#: logged to the ``flask_dispatch`` logger. A tenant a ``flask dispatch``
#: command built is let go with ``"evict"`` when the command is done.
tenant_evicted = _signals.signal("tenant-evicted")
