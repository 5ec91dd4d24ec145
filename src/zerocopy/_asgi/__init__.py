"""ASGI server integrations: the file-body messages (``body``) and uvicorn's protocols.

Nothing here is imported by ``import zerocopy``: :mod:`zerocopy.uvicorn`
imports ``uvicorn_impl`` (which checks uvicorn's version first) and
``uvicorn_h11``; both need uvicorn, and the first also httptools.
"""
