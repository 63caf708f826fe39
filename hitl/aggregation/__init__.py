"""Answer aggregation: majority vote, Wawa, Dawid-Skene and friends.

One protocol for every method: integer arrays ``(task, worker, label)`` in, a
per-task posterior matrix ``posteriors_`` out; ``fit`` / ``fit_predict`` /
``fit_predict_proba`` also take a DataFrame with columns ``task, worker, label``.
A classifier's per-task probabilities can join as one more annotator (``prior``).
"""

from ._base import BaseAggregator, check_answers, check_prior
from .dawid_skene import DawidSkene, ds_e_step, ds_m_step, ds_m_step_sums
from .majority import MajorityVote, Wawa

__all__ = [
    "BaseAggregator",
    "MajorityVote",
    "Wawa",
    "DawidSkene",
    "ds_e_step",
    "ds_m_step_sums",
    "ds_m_step",
    "check_answers",
    "check_prior",
]
