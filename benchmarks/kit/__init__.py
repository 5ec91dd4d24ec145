"""The benchmark kit: what the scripts in benchmarks/ share and the wheel does not ship.

- :mod:`.toolkit`: the measuring helpers, one import for all (sizes, CPU
  accounting, the machine, rounds; the package's ``zerocopy._bench`` holds the
  part ``python -m zerocopy bench`` needs, this kit the rest);
- :mod:`.measure`, :mod:`.counting`: samples, process trees, the load meter,
  summaries; callgrind instruction counts;
- :mod:`.common`: the scripts' options, ratios, targets, table, JSON, files;
- :mod:`.peer`: the one way to start a peer process (:class:`~.peer.Peer`) and
  an external server (:class:`~.peer.Server`).

The scripts run as ``python benchmarks/SCRIPT.py``, so ``benchmarks/`` is on
``sys.path`` and they ``from kit import common as c``.
"""
