import datetime as dt

import numpy as np
import pytest

import hitl
from hitl.errors import ConfigError, ValidationError


def test_simulated_answers_are_deterministic_and_calibrated():
    truth = np.arange(20_000) % 4
    crowd = hitl.SimulatedCrowd([hitl.HITer("a", "TG"), hitl.HITer("b", "KE"), hitl.HITer("c", "FR")],
                                accuracy=[0.9, 0.6, np.nan], truth=truth, n_classes=4, random_state=1)
    items = np.tile(np.arange(20_000), 3)
    workers = np.repeat([0, 1, 2], 20_000)
    a1 = crowd.answer(items, workers)
    a2 = crowd.answer(items[::-1], workers[::-1])
    assert np.array_equal(a1.label, a2.label[::-1]) and np.array_equal(a1.seconds, a2.seconds[::-1])
    acc = [(a1.label[workers == w] == truth[items[workers == w]]).mean() for w in range(3)]
    assert abs(acc[0] - 0.9) < 0.01 and abs(acc[1] - 0.6) < 0.01
    assert abs(acc[2] - 0.25) < 0.015  # a spammer is right by chance only
    wrong = a1.label[(workers == 1) & (a1.label != truth[items])]
    assert np.bincount(wrong, minlength=4).min() > 0.2 * len(wrong)  # errors spread over classes
    assert (a1.seconds >= 1).all() and (a1.seconds <= 600).all()
    chunks = list(crowd.collect(items[:150], workers[:150]))
    assert sum(len(c) for c in chunks) == 150


def test_profiles():
    truth = np.zeros(10, dtype=int)
    crowd = hitl.SimulatedCrowd.from_profile("realistic", 40, truth=truth, n_classes=3, countries=["TG", "FR"])
    assert len(crowd.hiters) == 40 and {h.country for h in crowd.hiters} == {"TG", "FR"}
    assert crowd.kinds.count("spammer") == 2 and np.isnan(crowd.accuracy).sum() == 2
    with pytest.raises(ConfigError, match="profile"):
        hitl.SimulatedCrowd.from_profile("angels", 3, truth=truth, n_classes=3)


@pytest.mark.parametrize("kwargs, field", [
    (dict(id="", country="TG"), "HITer.id"),
    (dict(id="x", country="Togo"), "country"),
    (dict(id="x", country="TG", hourly_min_wage=0), "hourly_min_wage"),
])
def test_bad_hiters(kwargs, field):
    with pytest.raises(ValidationError) as err:
        hitl.HITer(**kwargs)
    assert err.value.field == field


def test_router_respects_residency_and_distinct_workers():
    rng = np.random.default_rng(0)
    countries = ["FR", "TG", "KE", "MG"] * 5
    allowed = [None if r < 0.5 else list(rng.choice(["FR", "TG", "KE", "US"], size=rng.integers(1, 3), replace=False))
               for r in rng.random(500)]
    pool = hitl.Pool(np.zeros((500, 1)), allowed_countries=allowed)
    router = hitl.Router(answers_per_item=3, random_state=0)
    items = np.arange(500)
    out = router.assign(items, pool.may_go_to(countries), load=np.zeros(20))
    for i, w in zip(out.items.tolist(), out.workers.tolist()):
        assert allowed[i] is None or countries[w] in allowed[i]
    pairs = set(zip(out.items.tolist(), out.workers.tolist()))
    assert len(pairs) == len(out.items)
    assert np.bincount(out.items, minlength=500).max() == 3
    assert out.unroutable.tolist() == [i for i, a in enumerate(allowed) if a == ["US"]]
    # load spreads work: nobody gets more than twice the mean
    counts = np.bincount(out.workers, minlength=20)
    assert counts.max() < 2 * counts.mean()


def test_router_and_budget_validation():
    with pytest.raises(ConfigError):
        hitl.Router(answers_per_item=0)
    with pytest.raises(ConfigError):
        hitl.Budget(answers=-1)
    with pytest.raises(ValidationError):
        hitl.Router().assign(np.arange(3), np.ones((2, 4), bool), np.zeros(4))
    assert hitl.Router(auto_accept=0.9).accept_mask(np.array([[0.95, 0.05], [0.5, 0.5]])).tolist() == [True, False]
