"""Evaluation metrics."""

from genjax.metrics import sample_quality
from genjax.metrics.mode_coverage import mode_coverage, scatter
from genjax.metrics.sample_quality import (GaussianStats, frechet_distance, frechet_distance_of, kid,
                                           precision_recall_density_coverage)

__all__ = ["GaussianStats", "frechet_distance", "frechet_distance_of", "kid", "mode_coverage",
           "precision_recall_density_coverage", "sample_quality", "scatter"]
