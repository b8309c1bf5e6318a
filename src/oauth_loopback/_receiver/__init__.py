"""The loopback receiver: a sans-I/O core inside an anyio shell.

The core decides and does no I/O (no anyio, socket, h11 or authlib; import-linter checks it):
``_heads`` (the request head without the browser's cookies, and its caps), ``_registry``
(pending states, what a response means), ``_routing`` (path, method, Host), ``_pages`` (what
the browser is shown). The shell moves bytes: ``_receiver`` (the public
``open_receiver``, ``CallbackReceiver``, ``PendingCallback``), ``_serving`` (connections),
``_binding`` (sockets, ports), ``_portowner`` (who holds a busy port), ``_http`` (the h11
plumbing the embedded authorization server shares) and ``_tasks`` (task groups whose errors
reach callers unwrapped).
"""
