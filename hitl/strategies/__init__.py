"""Query strategies: which unlabeled items are worth a human's time.

Every strategy is a plain function usable as a modAL ``query_strategy``
(``strategy(classifier, X, n_instances=1, **kw) -> Selection``, a named tuple
that unpacks as ``indices, scores`` like modAL's own strategies), and has a
score-only form on arrays. The engine calls :func:`select` with probabilities
it computed once per round.

Uncertainty: :func:`least_confident`, :func:`margin`, :func:`entropy`
(compiled one-pass kernels; memmapped pools are read in chunks).
Committee: :func:`vote_entropy`, :func:`kl_to_consensus`. Bayesian: :func:`bald`.
Feature space: :func:`density_weighted`, :func:`core_set`, :func:`badge`,
:func:`cluster_margin`, :func:`ranked_batch`. Baseline: :func:`random`.

Ties among equal scores go to the lower position when ``random_state`` is None
and are ordered by a draw from ``random_state`` otherwise; the same seed also
drives the strategies that sample (random, BADGE, density weighting on large
pools, cluster-margin on large batches), so a seed gives the same picks every
time. Greedy geometric steps (core-set, ranked batch) break exact ties by index.

Examples
--------
>>> import numpy as np
>>> from hitl.strategies import select, margin_scores
>>> P = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
>>> sel = select("margin", 2, proba=P)
>>> sel.indices.tolist(), sel.scores.round(2).tolist()
([1, 2], [1.0, 0.6])
"""

from ._core import ProbaProxy, Selection, top_k
from .bayesian import bald, bald_scores
from .committee import kl_to_consensus, kl_to_consensus_scores, member_proba, vote_entropy, vote_entropy_scores
from .diversity import (
    badge,
    cluster_margin,
    core_set,
    density_weighted,
    density_weighted_scores,
    information_density,
    min_sq_distances,
    ranked_batch,
)
from .select import STRATEGIES, register, select
from .uncertainty import (
    entropy,
    entropy_scores,
    least_confident,
    least_confident_scores,
    margin,
    margin_scores,
    random,
    random_scores,
)

__all__ = [
    "Selection",
    "select",
    "register",
    "STRATEGIES",
    "ProbaProxy",
    "top_k",
    # strategies (modAL-style functions)
    "random",
    "least_confident",
    "margin",
    "entropy",
    "vote_entropy",
    "kl_to_consensus",
    "bald",
    "density_weighted",
    "core_set",
    "badge",
    "cluster_margin",
    "ranked_batch",
    # score-only forms and helpers
    "random_scores",
    "least_confident_scores",
    "margin_scores",
    "entropy_scores",
    "vote_entropy_scores",
    "kl_to_consensus_scores",
    "member_proba",
    "bald_scores",
    "density_weighted_scores",
    "information_density",
    "min_sq_distances",
]
