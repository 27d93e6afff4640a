"""User-facing errors: one line that names the problem and the fix.

The command line turns every :class:`OfakdError` into that line and its ``exit_code``
(``--debug`` shows the traceback). Library callers can catch it like any exception.

Exit statuses of ``ofakd`` (see docs/errors.md):

* 0 - done (or stopped as asked by ``--stop-after-epochs``);
* 2 - bad input: config, flag, model name, checkpoint, data, cache or method option (:data:`EXIT_BAD_INPUT`);
* 3 - a non-finite loss or gradient stopped the run; nothing after the last good checkpoint was saved
  (:data:`EXIT_NONFINITE`);
* 69 - another process of a distributed run (torchrun) stopped or stopped answering within
  ``train.dist_timeout``; the last checkpoint is intact (:data:`EXIT_PEER_LOST`, EX_UNAVAILABLE);
* 74 - a file could not be written (disk full, file-size limit, read-only); the previous checkpoint is
  intact (:data:`EXIT_WRITE_FAILED`, EX_IOERR);
* 75 - stopped by SIGTERM/SIGINT after saving a recovery checkpoint: continue with ``--resume``
  (:data:`EXIT_INTERRUPTED`, EX_TEMPFAIL);
* 130 - a second SIGINT (Ctrl-C) stopped it at once, without saving.
"""

EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3
EXIT_PEER_LOST = 69
EXIT_WRITE_FAILED = 74
EXIT_INTERRUPTED = 75
EXIT_KILLED_BY_CTRL_C = 130


class OfakdError(Exception):
    """Bad input from the user (config, model name, checkpoint, data, options)."""

    exit_code = EXIT_BAD_INPUT
    """The command line's exit status for this error."""
    label = "error"
    """The word after the command in the one-line message (``ofakd train: error: ...``)."""


class ConfigError(OfakdError, ValueError):
    """A config field, override or method option is invalid."""


class ModelError(OfakdError, ValueError):
    """A model name, checkpoint or model pairing is invalid."""


class DataError(OfakdError, ValueError):
    """A data set path, layout or file is invalid."""
