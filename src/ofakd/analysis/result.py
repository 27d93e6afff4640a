"""The CKA matrix between two models' layers, and its CSV and JSON files."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..run_folder.atomic import write_json, write_text

ESTIMATOR = "linear CKA, unbiased HSIC summed over minibatches (Nguyen, Raghu & Kornblith 2021)"


@dataclass
class CKAResult:
    """``matrix[i, j]`` is the CKA between layer ``names_a[i]`` of model A and ``names_b[j]`` of model B."""

    matrix: np.ndarray
    names_a: list[str]
    names_b: list[str]
    model_a: str = "model A"
    model_b: str = "model B"
    num_samples: int = 0
    num_batches: int = 0
    layers: str = "stages"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        if self.matrix.shape != (len(self.names_a), len(self.names_b)):
            raise ValueError(
                f"matrix shape {self.matrix.shape} does not match {len(self.names_a)} x {len(self.names_b)} names"
            )

    def to_dict(self) -> dict:
        """JSON-ready dict; NaN (a layer without variance) becomes ``null``."""
        return {
            "model_a": self.model_a,
            "model_b": self.model_b,
            "layers": self.layers,
            "names_a": list(self.names_a),
            "names_b": list(self.names_b),
            "matrix": [[None if math.isnan(v) else float(v) for v in row] for row in self.matrix.tolist()],
            "num_samples": self.num_samples,
            "num_batches": self.num_batches,
            "estimator": ESTIMATOR,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CKAResult:
        matrix = np.array(
            [[np.nan if v is None else v for v in row] for row in data["matrix"]], dtype=np.float64
        )
        matrix = matrix.reshape(len(data["names_a"]), len(data["names_b"]))
        known = {
            "model_a",
            "model_b",
            "layers",
            "names_a",
            "names_b",
            "matrix",
            "num_samples",
            "num_batches",
            "estimator",
        }
        return cls(
            matrix=matrix,
            names_a=list(data["names_a"]),
            names_b=list(data["names_b"]),
            model_a=data.get("model_a", "model A"),
            model_b=data.get("model_b", "model B"),
            num_samples=int(data.get("num_samples", 0)),
            num_batches=int(data.get("num_batches", 0)),
            layers=data.get("layers", "stages"),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> CKAResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save_csv(self, path: str | Path) -> Path:
        """Rows are model A's layers, columns model B's; the corner cell names both models."""
        path = Path(path)
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow([f"{self.model_a} \\ {self.model_b}", *self.names_b])
        for name, row in zip(self.names_a, self.matrix):
            writer.writerow([name, *("" if math.isnan(v) else repr(float(v)) for v in row)])
        write_text(path, text.getvalue())
        return path

    @staticmethod
    def read_csv(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
        """(names_a, names_b, matrix) from a file written by :meth:`save_csv`."""
        with Path(path).open(newline="") as handle:
            rows = list(csv.reader(handle))
        names_b = rows[0][1:]
        names_a = [row[0] for row in rows[1:]]
        matrix = np.array(
            [[float(v) if v else np.nan for v in row[1:]] for row in rows[1:]], dtype=np.float64
        )
        return names_a, names_b, matrix.reshape(len(names_a), len(names_b))
