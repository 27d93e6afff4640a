"""Analysis: CKA between any two models' stages, heatmaps, and run reports."""

from .hsic import MinibatchCKA, hsic_unbiased, linear_cka, minibatch_cka
from .result import CKAResult
from .stage_cka import cka

__all__ = ["CKAResult", "MinibatchCKA", "cka", "hsic_unbiased", "linear_cka", "minibatch_cka"]
