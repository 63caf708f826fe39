"""Calibration: make a model's confidence mean what it says.

The router auto-accepts a machine label when the model is sure, so an
over-confident model ships wrong labels silently. This module measures that
(:func:`expected_calibration_error`, :func:`reliability_curve`) and fixes it:

- :class:`TemperatureScaling` divides logits by one learned temperature
  (Guo et al., 2017), optionally mixed with a flat share that prices
  confidently wrong labels (Zhang et al., 2020); it never changes the
  predicted class.
- :class:`PlattScaling` fits one sigmoid per class on the log-odds (one-vs-rest
  Platt scaling, renormalised).
- :class:`IsotonicCalibration` fits one monotone map per class (needs more data).
- :class:`CalibratedModel` wraps any protocol model: it holds out part of the
  labels (or cross-fits) to learn the map, and is itself a protocol model.

Only numpy, scipy and scikit-learn are needed here (no torch), so the engine can
report ECE for every model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator, clone, is_classifier

from ..errors import ConfigError, NotFittedError, ValidationError
from ._device import check_fraction, check_labels, check_positive_int, n_rows, split_holdout

__all__ = [
    "expected_calibration_error",
    "reliability_curve",
    "TemperatureScaling",
    "PlattScaling",
    "IsotonicCalibration",
    "CalibratedModel",
]

_EPS = 1e-12


def _check_proba(proba: Any, y: Any | None = None, field: str = "proba") -> tuple[np.ndarray, np.ndarray | None]:
    P = np.asarray(proba, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] < 1:
        raise ValidationError(f"has shape {P.shape}", field=field, expected="an (n_items, n_classes) array")
    if not np.isfinite(P).all():
        bad = int(np.argmax(~np.isfinite(P).all(axis=1)))
        raise ValidationError("is NaN or infinite", item=bad, field=field, expected="finite probabilities")
    if len(P) and (P.min() < -1e-9 or P.max() > 1 + 1e-9):
        bad = int(np.argmax(((P < -1e-9) | (P > 1 + 1e-9)).any(axis=1)))
        raise ValidationError("lies outside [0, 1]", item=bad, field=field, expected="probabilities in [0, 1]")
    if y is None:
        return P, None
    yy = np.asarray(y)
    if yy.ndim != 1 or len(yy) != len(P):
        raise ValidationError(
            f"has shape {yy.shape} for {len(P)} rows of {field}", field="y", expected="one class index per row"
        )
    if len(yy) and (not np.issubdtype(yy.dtype, np.integer) or yy.min() < 0 or yy.max() >= P.shape[1]):
        if not np.issubdtype(yy.dtype, np.integer):
            raise ValidationError(f"has dtype {yy.dtype}", field="y", expected="integer class indices")
        bad = int(np.argmax((yy < 0) | (yy >= P.shape[1])))
        raise ValidationError(f"is {yy[bad]}", item=bad, field="y", expected=f"class indices in [0, {P.shape[1]})")
    return P, yy.astype(np.int64, copy=False)


def _binned(proba: Any, y: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    P, yy = _check_proba(proba, y)
    n_bins = check_positive_int(n_bins, "n_bins")
    n = len(P)
    if n == 0:
        raise ValidationError("is empty", field="proba", expected="at least one row")
    conf = P.max(axis=1)
    correct = (P.argmax(axis=1) == yy).astype(np.float64)
    # Equal-width bins (lo, hi]; a confidence of exactly 1 lands in the last bin.
    b = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    sum_conf = np.bincount(b, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(b, weights=correct, minlength=n_bins)
    return count, sum_conf, sum_acc, n


def expected_calibration_error(proba: Any, y: Any, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence.

    Rows are binned by their largest probability into ``n_bins`` equal-width
    bins; ECE is the mean, weighted by bin size, of ``|accuracy - confidence|``
    per bin. 0 is perfect; an over-confident model scores high.

    Parameters
    ----------
    proba : (n, k) array of probabilities
    y : (n,) int array of true class indices
    n_bins : int, default 15

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    >>> round(expected_calibration_error(P, np.array([0, 0, 0, 1])), 3)
    0.1
    """
    count, sum_conf, sum_acc, n = _binned(proba, y, n_bins)
    return float(np.abs(sum_acc - sum_conf).sum() / n)


def reliability_curve(proba: Any, y: Any, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin mean confidence, accuracy and size (the data of a reliability diagram).

    Empty bins get NaN confidence and accuracy.

    Examples
    --------
    >>> import numpy as np
    >>> c = reliability_curve(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]), n_bins=2)
    >>> c["accuracy"].tolist(), c["count"].tolist()
    ([nan, 0.5], [0, 2])
    """
    count, sum_conf, sum_acc, _ = _binned(proba, y, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "bin_upper": np.arange(1, n_bins + 1) / n_bins,
            "confidence": np.where(count > 0, sum_conf / count, np.nan),
            "accuracy": np.where(count > 0, sum_acc / count, np.nan),
            "count": count.astype(np.int64),
        }


def _softmax(z: np.ndarray) -> np.ndarray:
    # Rows may hold -inf (a class the model rules out); they stay at probability 0.
    m = np.max(z, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(z - m)
    return e / e.sum(axis=1, keepdims=True)


class TemperatureScaling(BaseEstimator):
    """One temperature ``T`` for all classes: ``softmax(logits / T)``, optionally mixed with a flat share.

    ``T > 1`` softens an over-confident model, ``T < 1`` sharpens an
    under-confident one; the arg-max (the predicted label) never changes.
    Probabilities can be given instead of logits as ``np.log(proba)``: the
    result is the same, since softmax ignores a per-row shift.

    Guo et al. (2017, "On Calibration of Modern Neural Networks") fit ``T`` on
    the negative log-likelihood (NLL). The NLL charges a confidently wrong
    label without bound, so for a network trained to near-zero training loss
    a few such labels set ``T``: it comes out too high and leaves every other
    row under-confident. ``flat=True`` fits, on the same NLL,
    ``(1 - w) softmax(logits / T) + w / k``: the flat share ``w`` prices the
    confident mistakes, so ``T`` follows the bulk of the rows. This is
    ensemble temperature scaling of Zhang, Kailkhura and Han (2020, "Mix-n-Match:
    Ensemble and Compositional Methods for Uncertainty Calibration in Deep
    Learning") without its untempered component. With no confident mistakes
    ``w`` goes to 0 and the plain temperature comes back.

    ``loss="brier"`` fits ``T`` on the Brier score instead, which is bounded
    per row and so not set by a few mistakes either, but it rewards sharpening
    an accurate model (on one of ten digits MLP splits it fell to the lower bound,
    one-hot outputs).

    Parameters
    ----------
    loss : {"nll", "brier"}, default "nll"
        Score minimised.
    flat : bool, default False
        Also fit the flat share ``w`` (NLL only).
    max_iter : int, default 100
    bounds : (float, float), default (0.05, 20.0)
        Range allowed for ``T``.

    Attributes
    ----------
    temperature_ : float
    flat_weight_ : float, the share ``w`` (0 without ``flat``)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 2000)
    >>> logits = rng.normal(size=(2000, 3)); logits[np.arange(2000), y] += 1.0
    >>> ts = TemperatureScaling().fit(4 * logits, y)   # 4x over-confident
    >>> 3.0 < ts.temperature_ < 5.0
    True
    >>> flat = TemperatureScaling(flat=True).fit(4 * logits, y)
    >>> bool(flat.flat_weight_ < 0.05), np.allclose(flat.predict_proba(logits).sum(axis=1), 1.0)
    (True, True)
    """

    def __init__(
        self, loss: str = "nll", flat: bool = False, max_iter: int = 100, bounds: tuple[float, float] = (0.05, 20.0)
    ) -> None:
        self.loss = loss
        self.flat = flat
        self.max_iter = max_iter
        self.bounds = bounds

    def fit(self, logits: Any, y: Any) -> "TemperatureScaling":
        Z = np.asarray(logits, dtype=np.float64)
        if Z.ndim != 2:
            raise ValidationError(f"has shape {Z.shape}", field="logits", expected="an (n_items, n_classes) array")
        if np.isnan(Z).any() or np.isposinf(Z).any():
            bad = int(np.argmax((np.isnan(Z) | np.isposinf(Z)).any(axis=1)))
            raise ValidationError("is NaN or +inf", item=bad, field="logits", expected="finite logits")
        _, yy = _check_proba(np.zeros_like(Z), y, field="logits")
        if len(Z) == 0:
            raise ValidationError("is empty", field="logits", expected="at least one row")
        if self.loss not in ("nll", "brier"):
            raise ConfigError(f"is {self.loss!r}", field="loss", expected="'nll' or 'brier'")
        if self.flat and self.loss != "nll":
            raise ConfigError("flat=True needs loss='nll'", field="loss", expected="'nll'")
        lo, hi = self.bounds
        if not 0 < lo < hi:
            raise ConfigError(f"is {self.bounds!r}", field="bounds", expected="0 < low < high")
        opts = {"maxiter": check_positive_int(self.max_iter, "max_iter")}
        finite = np.isfinite(Z)
        # A -inf logit (class ruled out) must not make the loss infinite when it is the true class.
        finite_min = np.min(np.where(finite, Z, np.inf), axis=1, keepdims=True)
        Z = np.where(finite, Z, finite_min - 30.0)
        zy = Z[np.arange(len(Z)), yy]
        box = (np.log(lo), np.log(hi))
        x0 = 0.0
        if self.loss == "brier":
            # The Brier score need not be convex in log T: start from the best of a coarse grid.
            grid = np.linspace(box[0], box[1], 25)
            x0 = float(grid[np.argmin([_temperature_brier(np.array([g]), Z, yy, zy)[0] for g in grid])])
        fun = _temperature_nll if self.loss == "nll" else _temperature_brier
        res = minimize(fun, x0=np.array([x0]), args=(Z, yy, zy), jac=True, method="L-BFGS-B",
                       bounds=[box], options=opts)
        self.temperature_, self.flat_weight_ = float(np.exp(res.x[0])), 0.0
        if self.flat:
            # From the plain temperature and a small share: the NLL there is close to the plain fit's.
            log_k = np.log(finite.sum(axis=1))
            res = minimize(_flat_temperature_nll, x0=np.array([res.x[0], -6.0]), args=(Z, yy, zy, log_k),
                           jac=True, method="L-BFGS-B", bounds=[box, (-30.0, 0.0)], options=opts)
            self.temperature_, self.flat_weight_ = float(np.exp(res.x[0])), float(expit(res.x[1]))
        return self

    def predict_proba(self, logits: Any) -> np.ndarray:
        if not hasattr(self, "temperature_"):
            raise NotFittedError("predict_proba called before fit", field="TemperatureScaling")
        Z = np.asarray(logits, dtype=np.float64)
        P = _softmax(Z / self.temperature_)
        if self.flat_weight_ == 0.0:
            return P
        # The flat share goes to the classes the model scores; a ruled-out class stays at 0.
        finite = np.isfinite(Z)
        flat = finite / np.maximum(finite.sum(axis=1, keepdims=True), 1)
        return (1.0 - self.flat_weight_) * P + self.flat_weight_ * flat


def _scaled_softmax(theta0: float, Z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``s = 1 / T`` from ``theta0 = log T``, ``softmax(s Z)`` and its log-normaliser per row."""
    s = float(np.exp(-theta0))  # optimised in log space to stay positive
    sz = s * Z
    m = sz.max(axis=1, keepdims=True)
    e = np.exp(sz - m)
    tot = e.sum(axis=1, keepdims=True)
    return s, e / tot, (m + np.log(tot))[:, 0]


def _temperature_nll(theta: np.ndarray, Z: np.ndarray, y: np.ndarray, zy: np.ndarray) -> tuple[float, np.ndarray]:
    s, p, lse = _scaled_softmax(theta[0], Z)
    d_ds = float(np.mean((p * Z).sum(axis=1) - zy))
    return float(np.mean(lse - s * zy)), np.array([-s * d_ds])


def _temperature_brier(theta: np.ndarray, Z: np.ndarray, y: np.ndarray, zy: np.ndarray) -> tuple[float, np.ndarray]:
    s, p, _ = _scaled_softmax(theta[0], Z)
    r = p.copy()
    r[np.arange(len(y)), y] -= 1.0
    # dp_j/ds = p_j (z_j - sum_i p_i z_i)
    zbar = (p * Z).sum(axis=1, keepdims=True)
    d_ds = float(np.mean((2.0 * r * p * (Z - zbar)).sum(axis=1)))
    return float(np.mean((r * r).sum(axis=1))), np.array([-s * d_ds])


def _flat_temperature_nll(
    theta: np.ndarray, Z: np.ndarray, y: np.ndarray, zy: np.ndarray, log_k: np.ndarray
) -> tuple[float, np.ndarray]:
    """NLL of ``(1 - w) softmax(Z / T) + w / k`` in ``(log T, logit w)``, with its gradient."""
    s, p, lse = _scaled_softmax(theta[0], Z)
    log_w, log_1mw = -np.logaddexp(0.0, -theta[1]), -np.logaddexp(0.0, theta[1])
    a = log_1mw + s * zy - lse  # log of the tempered part of p_y
    b = log_w - log_k           # log of the flat part
    log_py = np.logaddexp(a, b)
    r = np.exp(a - log_py)      # share of p_y from the tempered part
    zbar = (p * Z).sum(axis=1)
    g_t = s * float(np.mean(r * (zy - zbar)))
    g_w = float(np.exp(log_w) - np.mean(1.0 - r))
    return float(-np.mean(log_py)), np.array([g_t, g_w])


class PlattScaling(BaseEstimator):
    """One-vs-rest Platt scaling: ``sigmoid(a_c * logit(p_c) + b_c)`` per class, rows renormalised.

    All ``2k`` parameters are fit at once by L-BFGS on the summed logistic
    loss with Platt's smoothed targets, which keeps them finite when a class
    is all positive or all negative in the calibration set.

    Attributes
    ----------
    a_, b_ : (k,) arrays

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.99, 0.01], [0.99, 0.01], [0.99, 0.01], [0.01, 0.99]] * 10)
    >>> y = np.array([0, 0, 1, 1] * 10)
    >>> cal = PlattScaling().fit(P, y)
    >>> bool(cal.predict_proba(P)[0, 0] < 0.9)
    True
    """

    def __init__(self, max_iter: int = 200) -> None:
        self.max_iter = max_iter

    @staticmethod
    def _features(P: np.ndarray) -> np.ndarray:
        p = np.clip(P, _EPS, 1.0 - _EPS)
        return np.log(p) - np.log1p(-p)

    def fit(self, proba: Any, y: Any) -> "PlattScaling":
        P, yy = _check_proba(proba, y)
        n, k = P.shape
        if n == 0:
            raise ValidationError("is empty", field="proba", expected="at least one row")
        F = self._features(P)
        Y = np.zeros((n, k))
        Y[np.arange(n), yy] = 1.0
        n_pos = Y.sum(axis=0)
        t_pos = (n_pos + 1.0) / (n_pos + 2.0)
        t_neg = 1.0 / (n - n_pos + 2.0)
        T = np.where(Y > 0, t_pos, t_neg)

        def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = w[:k], w[k:]
            u = F * a + b
            # log(1 + e^u) - t u, the logistic loss written stably
            loss = float(np.sum(np.logaddexp(0.0, u) - T * u))
            r = expit(u) - T
            return loss, np.concatenate([(r * F).sum(axis=0), r.sum(axis=0)])

        w0 = np.concatenate([np.ones(k), np.zeros(k)])
        res = minimize(loss_grad, w0, jac=True, method="L-BFGS-B",
                       options={"maxiter": check_positive_int(self.max_iter, "max_iter")})
        self.a_, self.b_ = res.x[:k].copy(), res.x[k:].copy()
        return self

    def predict_proba(self, proba: Any) -> np.ndarray:
        if not hasattr(self, "a_"):
            raise NotFittedError("predict_proba called before fit", field="PlattScaling")
        P, _ = _check_proba(proba)
        return _renormalise(expit(self._features(P) * self.a_ + self.b_), P)


class IsotonicCalibration(BaseEstimator):
    """One-vs-rest isotonic regression per class, rows renormalised.

    More flexible than Platt scaling and so hungrier for data; prefer it from
    about a thousand calibration labels on.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.1, 0.9]] * 5)
    >>> IsotonicCalibration().fit(P, np.array([0, 1, 1, 1] * 5)).predict_proba(P).shape
    (20, 2)
    """

    def fit(self, proba: Any, y: Any) -> "IsotonicCalibration":
        from sklearn.isotonic import IsotonicRegression

        P, yy = _check_proba(proba, y)
        if len(P) == 0:
            raise ValidationError("is empty", field="proba", expected="at least one row")
        # A loop over classes (not items): k small 1-d fits.
        self.maps_ = [
            IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(P[:, c], (yy == c).astype(float))
            for c in range(P.shape[1])
        ]
        return self

    def predict_proba(self, proba: Any) -> np.ndarray:
        if not hasattr(self, "maps_"):
            raise NotFittedError("predict_proba called before fit", field="IsotonicCalibration")
        P, _ = _check_proba(proba)
        Q = np.column_stack([m.predict(P[:, c]) for c, m in enumerate(self.maps_)]) if len(P) else P.copy()
        return _renormalise(Q, P)


def _renormalise(Q: np.ndarray, P: np.ndarray) -> np.ndarray:
    # A class the model rules out (p == 0, e.g. never seen in training) stays at 0.
    Q = np.where(P > 0, Q, 0.0)
    s = Q.sum(axis=1, keepdims=True)
    return np.where(s > 0, Q / np.where(s > 0, s, 1.0), P)


_METHODS = ("auto", "temperature-flat", "temperature", "platt", "isotonic")
_TEMPERATURE = ("temperature-flat", "temperature")


class CalibratedModel(BaseEstimator):
    """Wrap a protocol model so its probabilities are calibrated on held-out labels.

    ``fit`` cross-fits by default: ``cv`` clones of ``model`` each predict the
    fold they did not see, and the map is learned on all those out-of-fold
    predictions, so no label is lost to calibration. With ``ensemble=True``
    (default) the ``cv`` fold models are the predictor: their scores are
    averaged and go through the map, which was fitted on those very models.
    With ``ensemble=False`` one more clone is trained on every label and
    predicts alone (cheaper to predict with, but an early-stopped network
    refitted on more data need not share its folds' over-confidence: on one
    MNIST split that turned ECE 0.012 into 0.027). With ``cv=None`` it holds
    out ``holdout`` of the labels (stratified) instead: one fit, but the map
    then rests on few labels and the model on fewer (MNIST MLP: accuracy
    0.919 against 0.926 with ``cv=5``).

    Parameters
    ----------
    model : protocol model
        e.g. :class:`~hitl.models.SklearnModel` or :class:`~hitl.models.TorchClassifier`.
    method : {"auto", "temperature-flat", "temperature", "platt", "isotonic"}, default "auto"
        "auto" uses Platt scaling for two-class models without logits and
        "temperature-flat" otherwise (the torch models, and any multi-class
        model through its log-probabilities). "temperature-flat" is a
        temperature mixed with a flat share, both fitted on the
        log-likelihood (:class:`TemperatureScaling` with ``flat=True``);
        "temperature" is the plain temperature of Guo et al. (2017), which a
        few confidently wrong labels can push too high (MNIST MLP without
        early stopping: held-out ECE 0.045 against 0.018 with the flat share,
        mean of 10 splits that the benchmark's table does not use).
        "isotonic" pays off from about a thousand calibration labels on.
    cv : int or None, default 5
        Folds of cross-fitting (>= 2), or ``None`` for a single hold-out split.
    ensemble : bool, default True
        With cross-fitting, predict with the fold models (the map applied to
        their mean score) rather than with one model refitted on all labels.
    holdout : float, default 0.2
        Fraction of labels held out for calibration when ``cv`` is None.
    min_calibration : int, default 10
        With fewer calibration rows than this the map is left out (identity)
        and ``calibrator_`` is None: a handful of labels cannot calibrate.
    n_classes : int, optional
    random_state : int, optional

    Attributes
    ----------
    models_ : list of the fitted models that predict (the folds' with ``ensemble=True``)
    model_ : ``models_[0]``; ``embed`` and ``grad_embed`` come from it
    calibrator_ : fitted TemperatureScaling / PlattScaling / IsotonicCalibration, or None
    method_ : str
    n_classes_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from hitl.models import SklearnModel
    >>> X, y = load_digits(return_X_y=True)
    >>> m = CalibratedModel(SklearnModel(LogisticRegression(max_iter=2000)), random_state=0).fit(X[:1000], y[:1000])
    >>> m.predict_proba(X[1000:]).shape
    (797, 10)
    """

    def __init__(
        self,
        model: Any,
        method: str = "auto",
        cv: int | None = 5,
        ensemble: bool = True,
        holdout: float = 0.2,
        min_calibration: int = 10,
        n_classes: int | None = None,
        random_state: Any = None,
    ) -> None:
        self.model = model
        self.method = method
        self.cv = cv
        self.ensemble = ensemble
        self.holdout = holdout
        self.min_calibration = min_calibration
        self.n_classes = n_classes
        self.random_state = random_state

    # -- fitting --------------------------------------------------------------------------------

    def _new_model(self, k: int, seed: int) -> Any:
        m = clone(self.model, safe=False)
        params = m.get_params(deep=False) if hasattr(m, "get_params") else {}
        if "n_classes" not in params and is_classifier(m):
            from .sklearn import SklearnModel

            m, params = SklearnModel(m, n_classes=k), {}  # a bare scikit-learn classifier: fix its columns
        if "n_classes" in params and params["n_classes"] is None:
            m.set_params(n_classes=k)
        if "random_state" in params and params["random_state"] is None and self.random_state is not None:
            m.set_params(random_state=seed)
        return m

    def _scores(self, model: Any, X: Any) -> np.ndarray:
        if self.method_ in _TEMPERATURE:
            if hasattr(model, "predict_logits"):
                return np.asarray(model.predict_logits(X), dtype=np.float64)
            with np.errstate(divide="ignore"):
                return np.log(np.asarray(model.predict_proba(X), dtype=np.float64))
        return np.asarray(model.predict_proba(X), dtype=np.float64)

    def fit(self, X: Any, y: Any) -> "CalibratedModel":
        from ._device import take_rows

        y, k = check_labels(y, n_rows(X), self.n_classes)
        if self.method not in _METHODS:
            raise ConfigError(f"is {self.method!r}", field="method", expected=" or ".join(map(repr, _METHODS)))
        self.method_ = self.method
        if self.method == "auto":
            # One-vs-rest sigmoids renormalised come out under-confident with many classes
            # (ECE 0.07-0.16 on 10-class digits, against 0.02 for a temperature): Platt only for two classes.
            binary_sklearn = k == 2 and not hasattr(self.model, "predict_logits")
            self.method_ = "platt" if binary_sklearn else "temperature-flat"
        self.n_classes_ = k
        rng = np.random.default_rng(self.random_state)
        seed = int(rng.integers(0, 2**31 - 1))
        min_cal = check_positive_int(self.min_calibration, "min_calibration")
        if self.cv is None:
            tr, cal = split_holdout(y, check_fraction(self.holdout, "holdout"), rng, min_size=min_cal)
            self.models_ = [self._new_model(k, seed).fit(take_rows(X, tr), y[tr])]
            self.model_ = self.models_[0]
            if len(cal) == 0:
                self.calibrator_ = None
                return self
            scores, y_cal = self._scores(self.model_, take_rows(X, cal)), y[cal]
        else:
            n_folds = check_positive_int(self.cv, "cv", minimum=2)
            folds = _fold_ids(y, n_folds, rng)
            scores = np.empty((len(y), k))
            fold_models = []
            for f in range(n_folds):
                test = np.flatnonzero(folds == f)
                train = np.flatnonzero(folds != f)
                if len(test) == 0 or len(train) == 0:
                    continue
                fm = self._new_model(k, seed + f + 1).fit(take_rows(X, train), y[train])
                scores[test] = self._scores(fm, take_rows(X, test))
                fold_models.append(fm)
            if self.ensemble and fold_models and len(fold_models) == n_folds:
                self.models_ = fold_models
            else:
                self.models_ = [self._new_model(k, seed).fit(X, y)]
            self.model_ = self.models_[0]
            y_cal = y
            if len(y) < min_cal:
                self.calibrator_ = None
                return self
        self.calibrator_ = self._make_calibrator().fit(scores, y_cal)
        return self

    def _make_calibrator(self) -> Any:
        if self.method_ in _TEMPERATURE:
            return TemperatureScaling(flat=self.method_ == "temperature-flat")
        if self.method_ == "platt":
            return PlattScaling()
        return IsotonicCalibration()

    # -- prediction -----------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if "model_" not in self.__dict__:
            raise NotFittedError("predict_proba called before fit", field="CalibratedModel")

    def _calibrate(self, scores: np.ndarray) -> np.ndarray:
        if self.calibrator_ is None:
            return _softmax(scores) if self.method_ in _TEMPERATURE else scores
        return self.calibrator_.predict_proba(scores)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated ``(n, n_classes)`` probabilities (the mean over ``models_``)."""
        self._check_fitted()
        return self._calibrate(self._mean_scores(X))

    def _mean_scores(self, X: Any) -> np.ndarray:
        """The members' log-probabilities (or logits) averaged, then put back in the map's input form.

        Averaging in log space (a normalised geometric mean) keeps the ensemble
        about as sharp as the single fold models the map was fitted on; an
        arithmetic mean of probabilities is softer and left the calibrated
        ensemble under-confident (digits, logistic regression: ECE 0.036
        against 0.023; MNIST MLP with isotonic maps: 0.046 against 0.021).
        A class that some members rule out (-inf, never seen in their fold) is
        averaged over the members that do score it.
        """
        first = self._log_scores(self.models_[0], X)
        if len(self.models_) > 1:
            total = np.where(np.isfinite(first), first, 0.0)
            count = np.isfinite(first).astype(np.float64)
            for m in self.models_[1:]:
                sc = self._log_scores(m, X)
                ok = np.isfinite(sc)
                total += np.where(ok, sc, 0.0)
                count += ok
            with np.errstate(invalid="ignore", divide="ignore"):
                first = np.where(count > 0, total / np.maximum(count, 1), -np.inf)
        return first if self.method_ in _TEMPERATURE else _softmax(first)

    def _log_scores(self, model: Any, X: Any) -> np.ndarray:
        if self.method_ in _TEMPERATURE:
            return self._scores(model, X)
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(model.predict_proba(X), dtype=np.float64))

    def predict(self, X: Any) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    def __getattr__(self, name: str) -> Any:
        # The optional protocol methods exist exactly when the wrapped model has them.
        d = self.__dict__
        if name in ("embed", "grad_embed") and "model_" in d and hasattr(d["model_"], name):
            return getattr(d["model_"], name)
        if name == "sample_proba" and "models_" in d and all(hasattr(m, name) for m in d["models_"]):
            return self._sample_proba
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _sample_proba(self, X: Any, n_samples: int = 20, **kwargs: Any) -> np.ndarray:
        """Monte-Carlo samples through the calibration map; with several models, a mixture over them."""
        n_samples = check_positive_int(n_samples, "n_samples")
        M = len(self.models_)
        share = np.full(M, n_samples // M) + (np.arange(M) < n_samples % M)
        out, at = None, 0
        for m, c in zip(self.models_, share):
            if c == 0:
                continue
            S = np.asarray(m.sample_proba(X, int(c), **kwargs))
            s, n, k = S.shape
            flat = S.reshape(s * n, k).astype(np.float64)
            if self.method_ in _TEMPERATURE:
                with np.errstate(divide="ignore"):
                    flat = np.log(flat)
            if out is None:
                out = np.empty((n_samples, n, k), dtype=S.dtype)
            out[at:at + s] = self._calibrate(flat).reshape(s, n, k)
            at += s
        return out


def _fold_ids(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each row, spreading every class over the folds round-robin (stratified)."""
    n = len(y)
    perm = rng.permutation(n)
    order = np.argsort(y[perm], kind="stable")
    rows = perm[order]
    ys = y[rows]
    _, starts, counts = np.unique(ys, return_index=True, return_counts=True)
    rank = np.arange(n) - np.repeat(starts, counts)
    # Offset each class's round-robin start so small classes do not all pile into fold 0.
    offset = np.repeat(rng.integers(0, n_folds, len(counts)), counts)
    folds = np.empty(n, dtype=np.int64)
    folds[rows] = (rank + offset) % n_folds
    return folds
