"""hitl: ML-assisted labeling with humans in the loop.

Pre-label a pool with a model, auto-accept what the model can vouch for, send the
most useful uncertain items to fairly paid human annotators (HITers) within data
residency rules, aggregate their answers, retrain, and loop.

Examples
--------
>>> import hitl
>>> sorted(n for n in hitl.__all__ if n[0].isupper())[:3]
['Budget', 'Curve', 'HITer']
"""

from . import aggregation, errors, impact, models, strategies
from .engine import Curve, LabelingProject, RunResult
from .errors import HitlError
from .human import HumanWorkforce
from .pool import Pool
from .routing import Budget, Router
from .store import Store
from .workforce import HITer, SimulatedCrowd, Workforce

__version__ = "0.1.0"

__all__ = [
    "aggregation",
    "strategies",
    "Budget",
    "Curve",
    "HITer",
    "HitlError",
    "HumanWorkforce",
    "LabelingProject",
    "Pool",
    "Router",
    "RunResult",
    "SimulatedCrowd",
    "Store",
    "Workforce",
    "errors",
    "impact",
    "models",
]
