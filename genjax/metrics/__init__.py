"""Evaluation metrics."""

from genjax.metrics.mode_coverage import mode_coverage, scatter

__all__ = ["mode_coverage", "scatter"]
