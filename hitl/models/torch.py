"""PyTorch models behind the ``hitl`` model protocol.

:class:`TorchClassifier` trains any ``torch.nn.Module`` that maps a batch of
inputs to ``n_classes`` logits (by default a small MLP, or a small CNN for
image-shaped inputs), with early stopping on a held-out split. Inference runs
in batches so only one batch at a time is ever on the device, and Monte-Carlo
dropout loops over samples per batch instead of replicating the input.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterator

import numpy as np
from sklearn.base import BaseEstimator

from ..errors import ConfigError, NotFittedError, ValidationError
from ._device import (
    autocast,
    batch_slices,
    check_finite_batch,
    check_fraction,
    check_labels,
    check_positive_int,
    n_rows,
    require_torch,
    resolve_device,
    seeded,
    split_holdout,
    to_device,
    torch_threads,
    uses_fp16_scaling,
)

__all__ = ["TorchClassifier", "make_mlp", "make_cnn"]


def make_mlp(n_features: int, n_classes: int, hidden: tuple[int, ...] = (128,), dropout: float = 0.2) -> Any:
    """A plain MLP: ``Linear -> ReLU -> Dropout`` per hidden layer, then a linear head.

    Examples
    --------
    >>> make_mlp(64, 10, hidden=(32,))[-1].out_features
    10
    """
    nn = require_torch().nn
    layers: list[Any] = []
    width = int(n_features)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, int(n_classes)))
    return nn.Sequential(*layers)


def make_cnn(in_channels: int, n_classes: int, hidden: int = 128, dropout: float = 0.2) -> Any:
    """A small CNN for images ``(channels, height, width)``: two conv blocks, then an MLP head.

    Adaptive pooling fixes the head's width, so any image size works (8x8 digits, 28x28 MNIST).

    Examples
    --------
    >>> make_cnn(1, 10)[-1].out_features
    10
    """
    nn = require_torch().nn
    return nn.Sequential(
        nn.Conv2d(int(in_channels), 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Dropout(dropout), nn.Linear(32 * 16, int(hidden)), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(int(hidden), int(n_classes)),
    )


class TorchClassifier(BaseEstimator):
    """Train a PyTorch network as a ``hitl`` model.

    Parameters
    ----------
    module : "auto", "mlp", "cnn", torch.nn.Module or callable, default "auto"
        The network, mapping a batch of inputs to ``n_classes`` logits.
        "auto" builds a small CNN when inputs are images (``X`` of shape
        ``(n, h, w)`` or ``(n, c, h, w)``, or ``input_shape`` given) and a small
        MLP otherwise. A module instance is deep-copied at every ``fit`` (its
        current weights are the starting point, so pretrained weights work and
        refitting never leaks state). A callable ``f(input_shape, n_classes) ->
        Module`` is called under the seed, so each fit starts from fresh,
        reproducible weights.
    n_classes : int, optional
        Labels are integers in ``[0, n_classes)``; default ``max(y) + 1`` at fit.
        Classes absent from the training labels get probability 0.
    hidden : tuple of int, default (128,)
        Hidden widths of the default MLP (the last one is the CNN head's width).
    dropout : float, default 0.2
        Dropout of the default networks; needed by :meth:`sample_proba`.
    input_shape : tuple of int, optional
        Shape of one item when rows of ``X`` are flat, e.g. ``(1, 28, 28)`` for
        MNIST pixels; rows are reshaped per batch.
    standardize : bool, default True
        Centre and scale inputs with training statistics (per feature for flat
        inputs, one mean and scale for images).
    lr, weight_decay : float
        AdamW settings.
    batch_size : int, default 64
        Training batch size.
    max_epochs : int, default 100
    patience : int, default 8
        Stop after this many epochs without a better validation loss; the best
        weights are restored.
    validation_fraction : float, default 0.1
        Share of labels held out (stratified) for early stopping. With fewer
        than 5 held-out rows there is no split and training runs ``max_epochs``.
    predict_batch_size : int, default 4096
        Rows per inference batch: the pool is streamed, never moved whole.
    device : "auto", "cpu", "cuda", "cuda:N" or torch.device, default "auto"
        "auto" picks CUDA when present.
    mixed_precision : bool or "bf16", default True
        True: on CUDA, run forward passes under autocast (bfloat16 where
        supported, else float16 with gradient scaling); nothing on the CPU.
        "bf16": bfloat16 autocast on the CPU too (fast on CPUs with AVX-512
        BF16 / AMX). False: full float32 everywhere.
    n_threads : int, optional
        CPU threads torch may use during this model's calls (restored after).
    random_state : int, optional
        Seeds weights, shuffling, the split and dropout; the global torch RNG
        is left as it was.

    Attributes
    ----------
    module_ : the trained network (None when a single class was seen)
    n_classes_ : int
    classes_seen_ : ndarray
    input_shape_ : tuple, shape of one item as fed to the network
    history_ : list of dict per epoch (train_loss, val_loss, val_accuracy)
    best_epoch_ : int
    device_ : torch.device

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = TorchClassifier(max_epochs=5, random_state=0, device="cpu").fit(X[:500], y[:500])
    >>> clf.predict_proba(X[500:510]).shape
    (10, 10)
    """

    def __init__(
        self,
        module: Any = "auto",
        n_classes: int | None = None,
        hidden: tuple[int, ...] = (128,),
        dropout: float = 0.2,
        input_shape: tuple[int, ...] | None = None,
        standardize: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        max_epochs: int = 100,
        patience: int = 8,
        validation_fraction: float = 0.1,
        predict_batch_size: int = 4096,
        device: Any = "auto",
        mixed_precision: Any = True,
        n_threads: int | None = None,
        random_state: Any = None,
    ) -> None:
        self.module = module
        self.n_classes = n_classes
        self.hidden = hidden
        self.dropout = dropout
        self.input_shape = input_shape
        self.standardize = standardize
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.predict_batch_size = predict_batch_size
        self.device = device
        self.mixed_precision = mixed_precision
        self.n_threads = n_threads
        self.random_state = random_state

    # -- input handling -------------------------------------------------------------------------

    def _item_shape(self, X: Any) -> tuple[int, ...]:
        shape = tuple(int(s) for s in X.shape[1:])
        if self.input_shape is None:
            return (1, *shape) if len(shape) == 2 else shape  # (h, w) images get a channel
        want = tuple(int(s) for s in self.input_shape)
        if int(np.prod(shape)) != int(np.prod(want)):
            raise ValidationError(
                f"has items of shape {shape}, which cannot be reshaped to input_shape {want}",
                field="X", expected=f"{int(np.prod(want))} values per item",
            )
        return want

    def _raw_batch(self, X: Any, sl: slice) -> np.ndarray:
        """Rows ``sl`` as a float32 array shaped for the network, before scaling."""
        part = X[sl]
        if hasattr(part, "toarray"):  # scipy sparse: densify one batch at a time
            part = part.toarray()
        elif hasattr(part, "detach"):  # a torch tensor
            part = part.detach().cpu().numpy()
        part = np.asarray(part, dtype=np.float32)
        check_finite_batch(part, sl.start)
        return part.reshape((len(part), *self.input_shape_))

    def _batch(self, X: Any, sl: slice) -> np.ndarray:
        part = self._raw_batch(X, sl)
        if self.mean_ is not None:
            part = (part - self.mean_) / self.scale_
        return np.ascontiguousarray(part, dtype=np.float32)

    @staticmethod
    def _as_indexable(X: Any) -> Any:
        if hasattr(X, "shape") and hasattr(X, "__getitem__") and len(getattr(X, "shape", ())) >= 2:
            return X
        if hasattr(X, "to_numpy"):
            return X.to_numpy()
        arr = np.asarray(X)
        if arr.ndim < 2:
            raise ValidationError(f"has shape {arr.shape}", field="X", expected="an (n_items, ...) numeric array")
        return arr

    # -- network ------------------------------------------------------------------------------

    def _build(self, k: int) -> Any:
        torch = require_torch()
        m = self.module
        image = len(self.input_shape_) >= 2
        if isinstance(m, str):
            if m not in ("auto", "mlp", "cnn"):
                raise ConfigError(f"is {m!r}", field="module", expected='"auto", "mlp", "cnn", a Module or a callable')
            kind = ("cnn" if image else "mlp") if m == "auto" else m
            drop = check_fraction(self.dropout, "dropout")
            if kind == "cnn":
                if not image:
                    raise ConfigError("is 'cnn' but items are flat", field="module",
                                      expected="images (n, h, w) / (n, c, h, w) or an input_shape")
                width = int(self.hidden[-1]) if len(self.hidden) else 128
                return make_cnn(self.input_shape_[0], k, hidden=width, dropout=drop)
            mlp = make_mlp(int(np.prod(self.input_shape_)), k, tuple(self.hidden), drop)
            return torch.nn.Sequential(torch.nn.Flatten(), *mlp) if image else mlp
        if isinstance(m, torch.nn.Module):
            return copy.deepcopy(m)
        if callable(m):
            built = m(self.input_shape_, k)
            if not isinstance(built, torch.nn.Module):
                raise ConfigError(f"returned {type(built).__name__}", field="module", expected="a torch.nn.Module")
            return built
        raise ConfigError(f"is {type(m).__name__}", field="module", expected='"auto", "mlp", "cnn", a Module or a callable')

    # -- training -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> "TorchClassifier":
        """Train on ``X`` (rows are items) and integer labels ``y``; returns ``self``."""
        torch = require_torch()
        X = self._as_indexable(X)
        y, k = check_labels(y, n_rows(X), self.n_classes)
        bs = check_positive_int(self.batch_size, "batch_size")
        max_epochs = check_positive_int(self.max_epochs, "max_epochs")
        patience = check_positive_int(self.patience, "patience")
        check_positive_int(self.predict_batch_size, "predict_batch_size")
        frac = check_fraction(self.validation_fraction, "validation_fraction")
        self.input_shape_ = self._item_shape(X)
        self.n_classes_ = k
        self.classes_seen_ = np.unique(y)
        self.device_ = resolve_device(self.device)
        self.mean_ = self.scale_ = None
        Xtr = self._raw_batch(X, slice(0, n_rows(X)))  # the labeled set: small next to the pool
        if self.standardize:
            if len(self.input_shape_) == 1:
                mean, scale = Xtr.mean(axis=0), Xtr.std(axis=0)
            else:
                mean, scale = np.float32(Xtr.mean()), np.float32(Xtr.std())
            self.mean_ = np.asarray(mean, dtype=np.float32)
            self.scale_ = np.where(np.asarray(scale) > 1e-8, scale, 1.0).astype(np.float32)
            Xtr = (Xtr - self.mean_) / self.scale_
        Xtr = np.ascontiguousarray(Xtr, dtype=np.float32)
        self.history_ = []
        self.best_epoch_ = 0
        if len(self.classes_seen_) == 1:
            # Nothing to discriminate: a constant prediction is the honest answer.
            self.module_ = None
            return self

        dev = self.device_
        use_amp = self.mixed_precision
        autocast(dev, use_amp)  # validates the setting before any work
        with torch_threads(self.n_threads), seeded(self.random_state, dev) as rng:
            net = self._build(k).to(dev)
            tr, va = split_holdout(y, frac, rng, min_size=5)
            opt = torch.optim.AdamW(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
            scaler = torch.amp.GradScaler("cuda", enabled=uses_fp16_scaling(dev, use_amp))
            loss_fn = torch.nn.CrossEntropyLoss()
            yt = torch.from_numpy(y)
            best, best_state, stale = np.inf, None, 0
            for epoch in range(max_epochs):
                net.train()
                order = tr[rng.permutation(len(tr))]
                total, seen = 0.0, 0
                for sl in batch_slices(len(order), bs):
                    idx = order[sl]
                    xb = to_device(Xtr[idx], dev)
                    yb = yt[idx].to(dev, non_blocking=True)
                    with autocast(dev, use_amp):
                        out = net(xb)
                    loss = loss_fn(out.float(), yb)
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    total += float(loss.detach()) * len(idx)
                    seen += len(idx)
                record = {"epoch": epoch, "train_loss": total / max(seen, 1)}
                if len(va):
                    val_loss, val_acc = self._evaluate(net, Xtr[va], y[va], use_amp)
                    record.update(val_loss=val_loss, val_accuracy=val_acc)
                    if val_loss < best - 1e-6:
                        best, stale, self.best_epoch_ = val_loss, 0, epoch
                        best_state = {n: t.detach().to("cpu", copy=True) for n, t in net.state_dict().items()}
                    else:
                        stale += 1
                else:
                    self.best_epoch_ = epoch
                self.history_.append(record)
                if len(va) and stale >= patience:
                    break
            if best_state is not None:
                net.load_state_dict(best_state)
        net.eval()
        self.module_ = net
        return self

    def _evaluate(self, net: Any, Xv: np.ndarray, yv: np.ndarray, use_amp: bool) -> tuple[float, float]:
        torch = require_torch()
        net.eval()
        logits = np.empty((len(Xv), self.n_classes_), dtype=np.float32)
        with torch.inference_mode():
            for sl in batch_slices(len(Xv), int(self.predict_batch_size)):
                with autocast(self.device_, use_amp):
                    logits[sl] = net(to_device(Xv[sl], self.device_)).float().cpu().numpy()
        logits[:, self._unseen_mask()] = -np.inf
        m = logits.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
        nll = float(np.mean(lse - logits[np.arange(len(yv)), yv]))
        return nll, float(np.mean(logits.argmax(axis=1) == yv))

    # -- inference ----------------------------------------------------------------------------

    def _check_fitted(self, what: str = "predict_proba") -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"{what} called before fit", field="TorchClassifier")

    def _unseen_mask(self) -> np.ndarray:
        mask = np.ones(self.n_classes_, dtype=bool)
        mask[self.classes_seen_] = False
        return mask

    def _stream(self, X: Any) -> Iterator[tuple[slice, Any]]:
        """Yield ``(rows, device batch)``; one batch at a time lives on the device."""
        X = self._as_indexable(X)
        if tuple(int(s) for s in X.shape[1:]) != tuple(self.input_shape_) and \
                int(np.prod(X.shape[1:])) != int(np.prod(self.input_shape_)):
            raise ValidationError(f"has items of shape {tuple(X.shape[1:])}", field="X",
                                  expected=f"items of shape {self.input_shape_} as at fit time")
        for sl in batch_slices(n_rows(X), int(self.predict_batch_size)):
            yield sl, to_device(self._batch(X, sl), self.device_)

    def _constant(self, n: int) -> np.ndarray:
        out = np.zeros((n, self.n_classes_), dtype=np.float32)
        out[:, self.classes_seen_[0]] = 1.0
        return out

    def _use_amp(self) -> Any:
        return self.mixed_precision

    def predict_logits(self, X: Any) -> np.ndarray:
        """Raw ``(n, n_classes)`` logits as float32; classes never seen are ``-inf``."""
        self._check_fitted("predict_logits")
        torch = require_torch()
        n = n_rows(X)
        if self.module_ is None:
            with np.errstate(divide="ignore"):
                return np.log(self._constant(n))
        out = np.empty((n, self.n_classes_), dtype=np.float32)
        mask = torch.from_numpy(self._unseen_mask()).to(self.device_)
        with torch_threads(self.n_threads), torch.inference_mode():
            self.module_.eval()
            for sl, xb in self._stream(X):
                with autocast(self.device_, self._use_amp()):
                    z = self.module_(xb)
                out[sl] = z.float().masked_fill(mask, -np.inf).cpu().numpy()
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, n_classes)`` float32 probabilities, computed batch by batch."""
        self._check_fitted()
        torch = require_torch()
        n = n_rows(X)
        if self.module_ is None:
            return self._constant(n)
        out = np.empty((n, self.n_classes_), dtype=np.float32)
        mask = torch.from_numpy(self._unseen_mask()).to(self.device_)
        with torch_threads(self.n_threads), torch.inference_mode():
            self.module_.eval()
            for sl, xb in self._stream(X):
                with autocast(self.device_, self._use_amp()):
                    z = self.module_(xb)
                out[sl] = torch.softmax(z.float().masked_fill(mask, -np.inf), dim=1).cpu().numpy()
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class index of each row."""
        return self.predict_proba(X).argmax(axis=1)

    # -- Monte-Carlo dropout ------------------------------------------------------------------

    def _mc_passes(self, X: Any, n_samples: int, random_state: Any) -> Iterator[tuple[slice, int, Any]]:
        """Yield ``(rows, sample index, probabilities on device)`` with dropout switched on.

        The loop runs over samples inside each batch: the batch goes to the
        device once and is never replicated, so device memory is that of one
        pass whatever ``n_samples`` is.
        """
        torch = require_torch()
        n_samples = check_positive_int(n_samples, "n_samples")
        drops = [m for m in self.module_.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
        if not drops:
            raise ConfigError("has no dropout layer, so Monte-Carlo samples would all be equal",
                              field="module", expected="a network with torch.nn.Dropout layers")
        seed = self.random_state if random_state is None else random_state
        mask = torch.from_numpy(self._unseen_mask()).to(self.device_)
        with torch_threads(self.n_threads), torch.inference_mode(), seeded(seed, self.device_):
            self.module_.eval()
            for d in drops:
                d.train()  # dropout on, everything else (batch norm) in inference mode
            try:
                for sl, xb in self._stream(X):
                    for s in range(n_samples):
                        with autocast(self.device_, self._use_amp()):
                            z = self.module_(xb)
                        yield sl, s, torch.softmax(z.float().masked_fill(mask, -np.inf), dim=1)
            finally:
                self.module_.eval()

    def sample_proba(self, X: Any, n_samples: int = 20, random_state: Any = None) -> np.ndarray:
        """Monte-Carlo dropout: ``(n_samples, n, n_classes)`` float32 probabilities.

        The result itself holds ``n_samples`` copies of the output; when only
        their summary is needed (BALD, mean prediction), :meth:`sample_stats`
        computes it without that array.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> X, y = load_digits(return_X_y=True)
        >>> clf = TorchClassifier(max_epochs=3, random_state=0, device="cpu").fit(X[:300], y[:300])
        >>> clf.sample_proba(X[:4], n_samples=5).shape
        (5, 4, 10)
        """
        self._check_fitted("sample_proba")
        n = n_rows(X)
        if self.module_ is None:
            return np.broadcast_to(self._constant(n), (int(n_samples), n, self.n_classes_)).copy()
        out = np.empty((int(n_samples), n, self.n_classes_), dtype=np.float32)
        for sl, s, p in self._mc_passes(X, n_samples, random_state):
            out[s, sl] = p.cpu().numpy()
        return out

    def sample_stats(self, X: Any, n_samples: int = 20, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Monte-Carlo dropout summaries in the memory of one pass.

        Returns
        -------
        mean_proba : (n, n_classes) float32, the mean of the sampled probabilities
        expected_entropy : (n,) float32, the mean entropy (nats) of the samples

        BALD's mutual information is ``entropy(mean_proba) - expected_entropy``.
        Same samples as :meth:`sample_proba` with the same ``random_state``.
        """
        self._check_fitted("sample_stats")
        torch = require_torch()
        n = n_rows(X)
        if self.module_ is None:
            return self._constant(n), np.zeros(n, dtype=np.float32)
        n_samples = check_positive_int(n_samples, "n_samples")
        mean = np.zeros((n, self.n_classes_), dtype=np.float32)
        ent = np.zeros(n, dtype=np.float32)
        acc_p = acc_h = None
        for sl, s, p in self._mc_passes(X, n_samples, random_state):
            h = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=1)
            acc_p = p if s == 0 else acc_p + p
            acc_h = h if s == 0 else acc_h + h
            if s == n_samples - 1:
                mean[sl] = (acc_p / n_samples).cpu().numpy()
                ent[sl] = (acc_h / n_samples).cpu().numpy()
        return mean, ent

    # -- embeddings for diversity / BADGE -----------------------------------------------------

    def _last_linear(self) -> Any:
        torch = require_torch()
        linears = [m for m in self.module_.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ConfigError("has no torch.nn.Linear layer", field="module",
                              expected="a network ending in a linear layer for embed / grad_embed")
        return linears[-1]

    def _penultimate(self, X: Any, with_proba: bool) -> Iterator[tuple[slice, Any, Any]]:
        torch = require_torch()
        head = self._last_linear()
        captured: list[Any] = []
        hook = head.register_forward_hook(lambda mod, inp, out: captured.append(inp[0]))
        mask = torch.from_numpy(self._unseen_mask()).to(self.device_)
        try:
            with torch_threads(self.n_threads), torch.inference_mode():
                self.module_.eval()
                for sl, xb in self._stream(X):
                    captured.clear()
                    with autocast(self.device_, self._use_amp()):
                        z = self.module_(xb)
                    h = captured[-1].float().reshape(len(xb), -1)
                    p = torch.softmax(z.float().masked_fill(mask, -np.inf), dim=1) if with_proba else None
                    yield sl, h, p
        finally:
            hook.remove()

    def embed(self, X: Any) -> np.ndarray:
        """``(n, d)`` float32 activations entering the network's last linear layer."""
        self._check_fitted("embed")
        if self.module_ is None:
            raise NotFittedError("embed needs a trained network; only one class was seen", field="TorchClassifier")
        out = None
        for sl, h, _ in self._penultimate(X, with_proba=False):
            if out is None:
                out = np.empty((n_rows(X), h.shape[1]), dtype=np.float32)
            out[sl] = h.cpu().numpy()
        return out if out is not None else np.empty((0, 0), dtype=np.float32)

    def grad_embed(self, X: Any) -> np.ndarray:
        """BADGE gradient embeddings ``(n, n_classes * d)``.

        The gradient of the cross-entropy at the predicted label with respect
        to the last layer's weights: ``(p - onehot(argmax p)) ⊗ h`` (Ash et al., 2020).
        """
        self._check_fitted("grad_embed")
        if self.module_ is None:
            raise NotFittedError("grad_embed needs a trained network; only one class was seen",
                                 field="TorchClassifier")
        torch = require_torch()
        out = None
        for sl, h, p in self._penultimate(X, with_proba=True):
            g = p.clone()
            g[torch.arange(len(p), device=p.device), p.argmax(dim=1)] -= 1.0
            block = (g[:, :, None] * h[:, None, :]).reshape(len(p), -1)
            if out is None:
                out = np.empty((n_rows(X), block.shape[1]), dtype=np.float32)
            out[sl] = block.cpu().numpy()
        return out if out is not None else np.empty((0, 0), dtype=np.float32)
