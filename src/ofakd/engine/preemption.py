"""Preemption: SIGTERM / SIGINT become a request to stop at the next step boundary.

Clusters stop jobs with SIGTERM (SLURM, Kubernetes, spot instances) and people with Ctrl-C.
While a run trains, :class:`StopRequest` catches both: the step under way finishes, the trainer
saves a recovery checkpoint (``last.pt`` with the position inside the epoch and every generator
state) and raises :class:`Interrupted`, which the command line turns into exit status 75
(EX_TEMPFAIL: "try again"). ``--resume RUN_DIR`` then continues exactly where it stopped. A second
signal while the first is being honoured stops at once (SIGINT raises ``KeyboardInterrupt``,
SIGTERM takes its default action) without saving.

With several processes (``torchrun``) a signal may reach one of them only, and all must stop at the
same step: they agree on it at the next read of the step records (every ``train.log_every`` steps, at
checkpoints and epoch ends; see ``loop``), in the all-reduce that read does anyway, not with a
collective every step.

After a SIGKILL nothing can be saved: ``train.checkpoint_every N`` (``--checkpoint-every N``)
saves ``last.pt`` every N steps so at most N steps are lost.
"""

from __future__ import annotations

import os
import signal
import threading

from ..errors import EXIT_INTERRUPTED, OfakdError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(OfakdError):
    """The run stopped on a signal after saving a recovery checkpoint; ``--resume`` continues it."""

    exit_code = EXIT_INTERRUPTED
    label = "interrupted"


class StopRequest:
    """Context manager that turns SIGTERM/SIGINT into :attr:`requested` (main thread only; a no-op
    elsewhere, where Python cannot install handlers). The previous handlers come back on exit."""

    def __init__(self, signals: tuple[signal.Signals, ...] = SIGNALS) -> None:
        self.signals = signals
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "no signal"

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Ask for a stop as if ``signum`` had arrived (e.g. from a test or a scheduler hook)."""
        self.signum = int(signum)

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum  # honoured at the next step boundary (no I/O in a signal handler)
            return
        self._restore()  # a second signal: stop now
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)

    def install(self) -> StopRequest:
        """Catch the signals from now on (until :meth:`restore`)."""
        if threading.current_thread() is threading.main_thread() and not self._previous:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        """Put the previous handlers back."""
        self._restore()

    def __enter__(self) -> StopRequest:
        return self.install()

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()
