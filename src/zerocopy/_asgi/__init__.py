"""ASGI server integrations: the file-body messages (``body``) and uvicorn's protocols.

Nothing here is imported by ``import zerocopy``: :mod:`zerocopy.uvicorn`
imports ``uvicorn_select``, which checks uvicorn's hooks and imports
``uvicorn_impl`` (httptools) and ``uvicorn_h11`` only where they are there.
"""
