"""The login flow on top of the receiver: everything that speaks OAuth to a server.

``_authorize`` (the orchestration of one interactive login), ``_metadata`` (discovery and
checks, RFC 8414), ``_registration`` (RFC 7591), ``_client`` (the one typed module around
authlib's client), ``_token`` (the ``Token`` a login ends with), ``_browser`` (launching the
browser safely) and ``_paste`` (the terminal fallback). Imported lazily: ``import
oauth_loopback`` loads none of it, nor authlib or httpx2.
"""
