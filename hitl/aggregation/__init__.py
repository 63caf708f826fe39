"""Answer aggregation: majority vote, Wawa, Dawid-Skene and friends.

One protocol for every method: integer arrays ``(task, worker, label)`` in, a
per-task posterior matrix ``posteriors_`` out; ``fit`` / ``fit_predict`` /
``fit_predict_proba`` also take a DataFrame with columns ``task, worker, label``.
A classifier's per-task probabilities can join as one more annotator (``prior``).

One vote per (task, worker), in every method: identical repeats count once, and a worker
who gave one task two different labels is refused (:class:`hitl.errors.ConflictingAnswerError`)
unless ``duplicates="last"`` keeps their last answer (see :func:`dedupe_answers`).
"""

from ._base import DUPLICATE_RULES, BaseAggregator, check_answers, check_fit_memory, check_prior, dedupe_answers
from .dawid_skene import (
    DawidSkene,
    OneCoinDawidSkene,
    confusions_from_posteriors,
    ds_e_step,
    ds_m_step,
    ds_m_step_sums,
)
from .glad import GLAD
from .mace import MACE
from .io import CrowdDataset, crowd_data_root, list_crowd_datasets, load_crowd_dataset, read_answers_csv, read_gold_csv
from .majority import MajorityVote, Wawa
from .quality import (
    WorkerAccuracy,
    binomial_interval,
    detect_spammers,
    gold_accuracy,
    spammer_scores,
    worker_accuracy_from_gold,
    worker_accuracy_from_posteriors,
    worker_accuracy,
    gold_prior,
)

#: The methods by their short names (the ``--method`` of ``hitl aggregate``).
METHODS = {
    "mv": MajorityVote,
    "wawa": Wawa,
    "ds": DawidSkene,
    "onecoin": OneCoinDawidSkene,
    "glad": GLAD,
    "mace": MACE,
}

__all__ = [
    "BaseAggregator",
    "MajorityVote",
    "Wawa",
    "DawidSkene",
    "OneCoinDawidSkene",
    "GLAD",
    "MACE",
    "ds_e_step",
    "ds_m_step_sums",
    "ds_m_step",
    "confusions_from_posteriors",
    "check_answers",
    "check_prior",
    "dedupe_answers",
    "DUPLICATE_RULES",
    "check_fit_memory",
    "METHODS",
    "CrowdDataset",
    "load_crowd_dataset",
    "list_crowd_datasets",
    "crowd_data_root",
    "read_answers_csv",
    "read_gold_csv",
    "WorkerAccuracy",
    "binomial_interval",
    "worker_accuracy_from_gold",
    "worker_accuracy_from_posteriors",
    "worker_accuracy",
    "gold_prior",
    "gold_accuracy",
    "spammer_scores",
    "detect_spammers",
]
