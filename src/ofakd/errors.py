"""User-facing errors: one line that names the problem and the fix.

The command line turns every :class:`OfakdError` into that line and exit status 2
(``--debug`` shows the traceback). Library callers can catch it like any exception.
"""


class OfakdError(Exception):
    """Bad input from the user (config, model name, checkpoint, data, options)."""


class ConfigError(OfakdError, ValueError):
    """A config field, override or method option is invalid."""


class ModelError(OfakdError, ValueError):
    """A model name, checkpoint or model pairing is invalid."""


class DataError(OfakdError, ValueError):
    """A data set path, layout or file is invalid."""
