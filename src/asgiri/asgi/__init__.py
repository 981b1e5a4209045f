"""The ASGI contract, written once for every protocol.

``scope`` builds scopes, ``http_stream`` is the one HTTP request/response
state machine that HTTP/1.1, HTTP/2 and HTTP/3 all drive, ``lifespan`` runs
the lifespan protocol and ``loader`` turns ``module:attr`` into an app.  This
layer does not import asyncio: it awaits futures that the server layer hands
it through the small :class:`~asgiri.asgi.types.Loop` protocol.
"""
