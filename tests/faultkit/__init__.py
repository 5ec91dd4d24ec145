"""Support for the fault, fuzz, concurrency and leak tests of every capability.

The tests live with their capability (``tests/test_<capability>_faults.py``,
``_fuzz``, ``_concurrency``, ``_leaks``); what several of them share is here:

- :mod:`faultkit.peers`: payloads, threads that read or feed a socket or pipe,
  and the checks of the peer and fd faults run for several APIs;
- :mod:`faultkit.signals`: a signal every millisecond, the transfer scenarios
  it interrupts, and the checks run over them;
- :mod:`faultkit.children`: the subprocess harnesses (an exhausted fd limit,
  a failed call's exception in a reference cycle);
- :mod:`faultkit.fuzz` and :mod:`faultkit.zoo`: the hypothesis watchdog and
  strategies, and the zoo of fds of every kind;
- :mod:`faultkit.threads`: the operations 16 threads run at once, and the
  probe proving a blocked call releases the GIL;
- :mod:`faultkit.flat`: fds and memory checked flat around many operations.
"""

KiB = 1 << 10
MiB = 1 << 20
