"""Stopping a search: SIGINT, SIGTERM or SIGHUP cut the running trials off, to be run again on a resume."""

import contextlib
import signal
import threading

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class TrialInterrupted(KeyboardInterrupt):
    """A stop signal cut the trial off; the search marks it to be run again."""


class Stop:
    """SIGINT, SIGTERM or SIGHUP while a search runs, caught so that the search ends with one line.

    The objective running in this (main) thread is stopped at once; trials elsewhere are
    cancelled by their engine, which watches ``requested``; a second signal stops at once.
    """

    def __init__(self):
        self.signum = None
        self.in_objective = False

    @property
    def requested(self):
        return self.signum is not None

    def _handle(self, signum, frame):
        again, self.signum = self.requested, self.signum or signum
        if self.in_objective or again:
            raise TrialInterrupted(signal.Signals(signum).name)

    @contextlib.contextmanager
    def catching(self):
        """The stop signals handled here for the ``with`` block (main thread only); an engine enters it again
        after whatever installs handlers of its own (``ray.init``)."""
        previous = {}
        try:
            if threading.current_thread() is threading.main_thread():
                for s in STOP_SIGNALS:
                    previous[s] = signal.signal(s, self._handle)
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)


class SearchStopped(SystemExit):
    """SIGTERM or SIGHUP stopped the search: uncaught, the process exits 128 + the signal's number, quietly."""

    def __init__(self, message, code):
        super().__init__(code)
        self.message = message

    def __str__(self):
        return self.message
