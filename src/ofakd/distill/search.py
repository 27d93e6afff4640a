"""What a search may try for a method's options, declared beside them (``Options.search_space``).

    class DISTOptions(LogitOptions):
        beta: LossWeight = 1.0
        search_space = {"beta": Range(0.25, 4.0, log=True), ...}

``ofakd tune`` reads it (:mod:`ofakd.tuning.space`) and turns each entry into an Optuna suggestion; a method
without a ``search_space`` is searched over the learning rate alone. A list option (OFA's ``eps``) is
searched as one value for every entry of the list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Any number in ``[low, high]``; ``log``: drawn uniformly in log space (for weights and temperatures)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"a search range needs low < high (and low > 0 for a log range), got {self}")

    def describe(self) -> str:
        return f"{self.low:g}-{self.high:g}{' (log)' if self.log else ''}"


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple

    def describe(self) -> str:
        return " | ".join(str(v) for v in self.values)


Dimension = Range | Choice
"""One searched option: a range of numbers or a choice of values."""
