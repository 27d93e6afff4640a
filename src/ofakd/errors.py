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

import json

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


class ModelKwargsError(ModelError):
    """A model that cannot be built with the kwargs it was given (a kwarg it does not take, or a bad value)."""


class DataError(OfakdError, ValueError):
    """A data set path, layout or file is invalid."""


# ---- teacher-output cache ----------------------------------------------------------
class CacheError(OfakdError, ValueError):
    """A teacher cache is missing, incomplete, damaged, or cannot serve this run."""


class CacheMismatchError(CacheError):
    """The cache was recorded for other settings than the run asks for (names the field)."""

    def __init__(self, directory, field: str, recorded, requested, fix: str = "") -> None:
        self.field, self.recorded, self.requested = field, recorded, requested
        fix = fix or "record a cache for these settings (`ofakd cache record`) or run without --teacher-cache"
        super().__init__(
            f"teacher cache {directory}: {field} was {_show(recorded)} when recorded but is {_show(requested)} "
            f"in this run; {fix}"
        )


class TeacherFeaturesError(CacheError, ConfigError):
    """The method reads teacher features and its teacher gives logits only (a teacher-output cache, or none): a
    cache that cannot serve the method, and a config that pairs them."""


def _show(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


# ---- loading and exporting a trained student -----------------------------------------
class UnfinishedRunError(OfakdError):
    """The run folder holds no finished checkpoint (no epoch has completed yet)."""


class StudentSourceError(OfakdError, ValueError):
    """The path is not a run folder, an ofakd ``.safetensors`` file or an exported timm folder."""


class ExportError(OfakdError):
    """Base of the export errors."""


class UnknownFormatError(ExportError, ValueError):
    """An export format that does not exist."""


class UnsupportedExportError(ExportError):
    """The architecture cannot be exported to the asked format (the exporter failed)."""


class ExportCheckError(ExportError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


def summarize_exception(err: BaseException, limit: int = 240) -> str:
    """``Type: first meaningful line`` of an exporter's exception, shortened to ``limit`` characters."""
    lines = [line.strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and not set(line) <= set("-=*#_ ")]
    text = next((line for line in lines if not line.lower().startswith(("traceback", "file ", "from user code"))), "")
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
