"""ASGI server integrations: the file-body messages (``body``) and uvicorn's protocols.

Nothing here is imported by ``import zerocopy``: :mod:`zerocopy.uvicorn`
imports :mod:`zerocopy._asgi.uvicorn`, which needs uvicorn and httptools.
"""
