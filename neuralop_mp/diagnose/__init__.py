"""Diagnose a model's precision: measured precision error, discretization error and
overflow margin per spectral layer and Fourier mode band, and the precision they
recommend (``neuralop-mp diagnose``; docs/diagnose.md)."""
from .auto import calibrate_precision, recheck_phase
from .measure import measure, restrict, variant_name
from .recommend import DEFAULT_FRACTION, DEFAULT_OVERFLOW_MARGIN, recommend

__all__ = ["calibrate_precision", "recheck_phase", "DEFAULT_FRACTION", "DEFAULT_OVERFLOW_MARGIN", "measure", "recommend", "restrict", "variant_name"]
