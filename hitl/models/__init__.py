"""Model adapters behind one protocol: ``fit``, ``predict_proba``; optional ``embed``,
``sample_proba`` (Monte-Carlo samples) and ``grad_embed`` (BADGE).

Members: :class:`SklearnModel` (any scikit-learn classifier), :class:`TorchClassifier`
(any ``torch.nn.Module``), :class:`TextEncoder` / :class:`TransformerClassifier`
(local Hugging Face encoders), :class:`Committee` (query-by-committee) and
:class:`CalibratedModel` (temperature, Platt or isotonic calibration), plus
:func:`expected_calibration_error`.

The torch-backed names load on first access, so ``import hitl.models`` works
without PyTorch installed.
"""

from importlib import import_module
from typing import Any

from .base import Model, predict
from .calibration import (
    CalibratedModel,
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    expected_calibration_error,
    reliability_curve,
)
from .committee import Committee
from .sklearn import SklearnModel

_LAZY = {
    "TorchClassifier": ".torch",
    "make_mlp": ".torch",
    "make_cnn": ".torch",
    "TextEncoder": ".transformers",
    "TransformerClassifier": ".transformers",
    "default_model_path": ".transformers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Model",
    "SklearnModel",
    "predict",
    "TorchClassifier",
    "make_mlp",
    "make_cnn",
    "TextEncoder",
    "TransformerClassifier",
    "default_model_path",
    "Committee",
    "CalibratedModel",
    "TemperatureScaling",
    "PlattScaling",
    "IsotonicCalibration",
    "expected_calibration_error",
    "reliability_curve",
]
