"""Model adapters: one protocol (``fit``, ``predict_proba``; optional ``embed``, ``sample_proba``)."""

from .base import Model, predict
from .sklearn import SklearnModel

__all__ = ["Model", "SklearnModel", "predict"]
