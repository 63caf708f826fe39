"""TorchClassifier: training, fixed class layout, determinism, batching, MC dropout, BADGE embeddings."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hitl.errors import ConfigError, NotFittedError, ValidationError  # noqa: E402
from hitl.models import TorchClassifier, predict  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    p = rng.permutation(len(y))
    return X[p].astype(np.float32), y[p]


def small(**kw):
    params = dict(hidden=(32,), max_epochs=15, patience=3, random_state=0, device="cpu", n_threads=1)
    params.update(kw)
    return TorchClassifier(**params)


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return small().fit(X[:800], y[:800])


def test_learns_digits_with_fixed_columns(digits, fitted):
    X, y = digits
    P = fitted.predict_proba(X[800:])
    assert P.shape == (len(y) - 800, 10)
    assert np.allclose(P.sum(axis=1), 1.0, atol=1e-5)
    assert (predict(fitted, X[800:]) == y[800:]).mean() > 0.9
    assert fitted.history_ and "val_loss" in fitted.history_[0]


def test_unseen_classes_get_zero(digits):
    X, y = digits
    keep = y != 3
    m = small(n_classes=12, max_epochs=3).fit(X[:400][keep[:400]], y[:400][keep[:400]])
    P = m.predict_proba(X[:50])
    assert P.shape == (50, 12)
    assert np.all(P[:, [3, 10, 11]] == 0.0)
    assert np.allclose(P.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.isneginf(m.predict_logits(X[:5])[:, [3, 10, 11]]))


def test_single_class_is_constant(digits):
    X, _ = digits
    m = small(n_classes=4).fit(X[:10], np.full(10, 2))
    P = m.predict_proba(X[:3])
    assert P.tolist() == [[0.0, 0.0, 1.0, 0.0]] * 3


def test_deterministic_and_leaves_global_rng_alone(digits):
    X, y = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = small(max_epochs=4).fit(X[:300], y[:300]).predict_proba(X[300:400])
    after = torch.rand(3)
    b = small(max_epochs=4).fit(X[:300], y[:300]).predict_proba(X[300:400])
    assert np.array_equal(a, b)
    assert torch.equal(expected, after)  # fit consumed nothing from the caller's stream
    c = small(max_epochs=4, random_state=1).fit(X[:300], y[:300]).predict_proba(X[300:400])
    assert not np.array_equal(a, c)


def test_n_threads_is_restored(digits):
    X, y = digits
    before = torch.get_num_threads()
    seen = []
    m = small(max_epochs=1, n_threads=1)
    m.fit(X[:100], y[:100])
    hook = m.module_.register_forward_hook(lambda *a: seen.append(torch.get_num_threads()))
    m.predict_proba(X[:10])
    hook.remove()
    assert seen == [1]
    assert torch.get_num_threads() == before


def test_early_stopping_restores_best_epoch(digits):
    X, y = digits
    m = small(max_epochs=200, patience=2, lr=5e-3).fit(X[:600], y[:600])
    assert len(m.history_) < 200
    losses = [h["val_loss"] for h in m.history_]
    assert m.best_epoch_ == int(np.argmin(losses))
    # the restored weights give the best epoch's validation loss back
    assert len(m.history_) - 1 - m.best_epoch_ == 2


def test_batch_size_does_not_change_predictions(digits, fitted):
    X, _ = digits
    a = fitted.predict_proba(X[:333])
    fitted.set_params(predict_batch_size=7)
    try:
        b = fitted.predict_proba(X[:333])
    finally:
        fitted.set_params(predict_batch_size=4096)
    assert np.allclose(a, b, atol=1e-6)


def test_inference_streams_batches(digits, fitted):
    X, _ = digits
    sizes = []
    hook = fitted.module_.register_forward_hook(lambda mod, inp, out: sizes.append(inp[0].shape[0]))
    fitted.set_params(predict_batch_size=100)
    try:
        fitted.predict_proba(X[:450])
        fitted.sample_proba(X[:450], n_samples=3)
    finally:
        hook.remove()
        fitted.set_params(predict_batch_size=4096)
    # never more than one batch on the device, and MC dropout never replicates it
    assert max(sizes) == 100
    assert len(sizes) == 5 + 5 * 3


def test_logits_match_proba(digits, fitted):
    X, _ = digits
    z = fitted.predict_logits(X[:20]).astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    assert np.allclose(p / p.sum(axis=1, keepdims=True), fitted.predict_proba(X[:20]), atol=1e-5)


def test_mc_dropout_samples(digits, fitted):
    X, _ = digits
    S = fitted.sample_proba(X[:60], n_samples=8, random_state=5)
    assert S.shape == (8, 60, 10) and S.dtype == np.float32
    assert np.allclose(S.sum(axis=2), 1.0, atol=1e-5)
    assert np.abs(S[0] - S[1]).max() > 1e-4  # dropout is really on
    assert np.array_equal(S, fitted.sample_proba(X[:60], n_samples=8, random_state=5))
    mean, ent = fitted.sample_stats(X[:60], n_samples=8, random_state=5)
    assert np.allclose(mean, S.mean(axis=0), atol=1e-5)
    H = -(S * np.log(np.clip(S, 1e-30, None))).sum(axis=2).mean(axis=0)
    assert np.allclose(ent, H, atol=1e-4)
    # inference afterwards is deterministic again (dropout switched back off)
    assert np.array_equal(fitted.predict_proba(X[:5]), fitted.predict_proba(X[:5]))


def test_mc_dropout_needs_dropout(digits):
    X, y = digits
    m = small(dropout=0.0, max_epochs=1).fit(X[:100], y[:100])
    with pytest.raises(ConfigError, match="dropout"):
        m.sample_proba(X[:5], n_samples=2)


def test_embed_and_badge_gradient_match_autograd(digits, fitted):
    X, _ = digits
    E = fitted.embed(X[:4])
    G = fitted.grad_embed(X[:4])
    assert E.shape == (4, 32) and G.shape == (4, 10 * 32)
    head = fitted.module_[-1]
    xb = torch.from_numpy(fitted._batch(X, slice(0, 1)))
    logits = fitted.module_(xb)
    loss = torch.nn.functional.cross_entropy(logits, logits.argmax(dim=1))
    (grad_w,) = torch.autograd.grad(loss, head.weight)
    assert np.allclose(G[0], grad_w.numpy().ravel(), atol=1e-5)


def test_images_use_a_cnn(digits):
    X, y = digits
    imgs = X.reshape(-1, 8, 8)
    m = small(max_epochs=3).fit(imgs[:300], y[:300])
    assert any(isinstance(l, torch.nn.Conv2d) for l in m.module_.modules())
    assert m.predict_proba(imgs[300:310]).shape == (10, 10)
    flat = small(max_epochs=3, input_shape=(1, 8, 8)).fit(X[:300], y[:300])
    assert any(isinstance(l, torch.nn.Conv2d) for l in flat.module_.modules())
    assert flat.predict_proba(X[300:310]).shape == (10, 10)


def test_custom_module_and_factory(digits):
    X, y = digits
    net = torch.nn.Sequential(torch.nn.Linear(64, 10))
    w0 = net[0].weight.detach().clone()
    m = small(module=net, max_epochs=2).fit(X[:200], y[:200])
    assert torch.equal(net[0].weight, w0)  # the user's module is copied, not trained in place
    assert m.predict_proba(X[:3]).shape == (3, 10)

    def factory(shape, k):
        return torch.nn.Sequential(torch.nn.Linear(int(np.prod(shape)), 16), torch.nn.ReLU(),
                                   torch.nn.Dropout(0.1), torch.nn.Linear(16, k))

    a = small(module=factory, max_epochs=2).fit(X[:200], y[:200]).predict_proba(X[:5])
    b = small(module=factory, max_epochs=2).fit(X[:200], y[:200]).predict_proba(X[:5])
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError):
        small(module=lambda s, k: "not a module").fit(X[:20], y[:20])


def test_sparse_input(digits):
    sp = pytest.importorskip("scipy.sparse")
    X, y = digits
    m = small(max_epochs=2).fit(sp.csr_matrix(X[:200]), y[:200])
    assert np.allclose(m.predict_proba(sp.csr_matrix(X[:7])), m.predict_proba(X[:7]), atol=1e-6)


def test_pickle_round_trip(digits, fitted):
    X, _ = digits
    back = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(back.predict_proba(X[:9]), fitted.predict_proba(X[:9]))


def test_bad_input_is_named(digits):
    X, y = digits
    Xbad = X[:50].copy()
    Xbad[17, 3] = np.nan
    with pytest.raises(ValidationError) as err:
        small().fit(Xbad, y[:50])
    assert err.value.item == 17
    with pytest.raises(ValidationError, match="labels for"):
        small().fit(X[:50], y[:49])
    with pytest.raises(ValidationError, match="class indices"):
        small(n_classes=5).fit(X[:50], y[:50])
    with pytest.raises(NotFittedError):
        small().predict_proba(X[:3])
    with pytest.raises(ConfigError):
        small(device="tpu:0").fit(X[:20], y[:20])
    with pytest.raises(ConfigError):
        small(module="transformer").fit(X[:20], y[:20])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            small(device="cuda").fit(X[:20], y[:20])


def test_prediction_time_nan_is_named(digits, fitted):
    X, _ = digits
    Xbad = X[:300].copy()
    Xbad[250, 0] = np.inf
    fitted.set_params(predict_batch_size=100)
    try:
        with pytest.raises(ValidationError) as err:
            fitted.predict_proba(Xbad)
    finally:
        fitted.set_params(predict_batch_size=4096)
    assert err.value.item == 250


def test_import_without_torch():
    code = (
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('no torch here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import hitl, hitl.models\n"
        "from hitl.models import SklearnModel, Committee, expected_calibration_error\n"
        "from hitl.errors import ConfigError\n"
        "import numpy as np\n"
        "try:\n"
        "    hitl.models.TorchClassifier(device='cpu').fit(np.eye(3), np.array([0, 1, 0]))\n"
        "except ConfigError as e:\n"
        "    print('ok', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok") and "torch" in out.stdout
