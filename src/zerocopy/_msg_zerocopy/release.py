"""on_release callbacks: called exactly once, when the kernel let go of a send's pages."""

from __future__ import annotations

from typing import Any

__all__ = ["Countdown", "OnceAcrossRetries", "chain_calls", "release_held"]


def release_held(held: list[Any]) -> None:
    """Release what completed sends held: their views, then their on_release callbacks."""
    for view, on_release in held:
        view.release()
        if on_release is not None:
            on_release()


def chain_calls(first: Any, then: Any, arg: Any) -> Any:
    """A callable that calls *first* (if not None), then ``then(arg)`` even if *first* raised."""

    def both() -> None:
        try:
            if first is not None:
                first()
        finally:
            then(arg)

    return both


class Countdown:
    """Calls *callback* once every part has reported done and no more will come."""

    __slots__ = ("callback", "open", "sealed")

    def __init__(self, callback: Any) -> None:
        self.callback = callback
        self.open = 0
        self.sealed = False

    def more(self) -> None:
        self.open += 1

    def done(self) -> None:
        self.open -= 1
        self._fire()

    def seal(self) -> None:
        self.sealed = True
        self._fire()

    def _fire(self) -> None:
        if self.sealed and self.open == 0 and self.callback is not None:
            callback, self.callback = self.callback, None
            callback()


# States of one send's on_release relay (see OnceAcrossRetries).
_IDLE, _CALLED, _LIVE, _FIRED = range(4)


class OnceAcrossRetries:
    """Passes the sync sender's *on_release* call on to the caller's, exactly once.

    :meth:`ZeroCopySender.send` calls *on_release* also when it fails, and a
    send that meets a full socket fails with :class:`BlockingIOError` and is
    retried here: that call must not reach the caller, the one from the
    attempt that succeeds (at its completion, or at once for a plain send) must.
    """

    __slots__ = ("state", "target")

    def __init__(self, target: Any) -> None:
        self.target = target
        self.state = _IDLE

    def __call__(self) -> None:
        if self.state == _LIVE:
            self._fire()
        elif self.state == _IDLE:
            self.state = _CALLED

    def _fire(self) -> None:
        self.state = _FIRED
        self.target()

    def retry(self) -> None:
        """The attempt raised BlockingIOError: forget its release call."""
        self.state = _IDLE

    def sent(self) -> None:
        """The attempt moved bytes: release now if it already was, else at completion."""
        if self.state == _CALLED:
            self._fire()
        else:
            self.state = _LIVE

    def failed(self) -> None:
        """The send ended with an exception: nothing of it is in flight."""
        if self.state in (_IDLE, _CALLED):
            self._fire()
