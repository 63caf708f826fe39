"""hitl.distributed: sharded pre-labeling, selection and Dawid-Skene, in-process and on Ray.

Tests marked ``ray`` share one local Ray started by ``hitl.distributed.connect`` (the
``ray_session`` fixture) and skip when Ray is not installed.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from hitl import distributed
from hitl.aggregation import DawidSkene
from hitl.errors import ConfigError, EmptyPoolError, ValidationError
from hitl.models import SklearnModel
from hitl.strategies import select


class SlowEcho:
    """Returns its input rows after a pause: lets a test see every row and catch a job mid-way."""

    def __init__(self, pause: float = 0.05) -> None:
        self.pause = pause

    def predict_proba(self, X):
        time.sleep(self.pause)
        return np.asarray(X, dtype=np.float64)


class Refuses:
    def predict_proba(self, X):
        raise ValidationError("is NaN", item=3, field="features", expected="finite values")


try:  # actors cannot import this test module: ship its helpers by value
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="module")
def pool_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_011, 16)).astype(np.float32)
    y = (X[:, :3] @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.5, len(X)) > 0).astype(int)
    y[X[:, 3] > 1.2] = 2
    model = SklearnModel(LogisticRegression(max_iter=500), n_classes=3).fit(X[:2000], y[:2000])
    return X, model


def _crowd(n_tasks=6000, n_workers=40, k=3, per_task=3, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_tasks)
    task = np.repeat(np.arange(n_tasks), per_task)
    # Distinct workers per task: one vote per (task, worker), as every aggregator requires.
    worker = np.argsort(rng.random((n_tasks, n_workers)), axis=1)[:, :per_task].ravel()
    acc = rng.uniform(0.45, 0.95, n_workers)
    label = np.where(rng.random(len(task)) < acc[worker], truth[task], rng.integers(0, k, len(task)))
    perm = rng.permutation(len(task))
    return task[perm], worker[perm], label[perm], n_tasks, n_workers, k


# ------------------------------------------------------------------ in-process (no Ray needed)


def test_shard_bounds_cover_every_row_once():
    b = distributed.shard_bounds(10, 3)
    assert b.tolist() == [[0, 3], [3, 6], [6, 9], [9, 10]]
    assert distributed.shard_bounds(0, 3).shape == (0, 2)
    with pytest.raises(ConfigError):
        distributed.shard_bounds(10, 0)


def test_prelabel_in_process_matches_model(pool_data):
    X, model = pool_data
    p = distributed.Prelabeler(use_ray=False, shard_rows=4096)
    P = p.predict_proba(model, X)
    assert p.backend_ == "in-process"
    np.testing.assert_array_equal(P, model.predict_proba(X))
    rows = np.array([5, 3, 20_010, 0])
    np.testing.assert_array_equal(p.predict_proba(model, X, rows=rows), model.predict_proba(X[rows]))


def test_prelabel_rejects_bad_input(pool_data):
    X, model = pool_data
    with pytest.raises(ValidationError, match="rows"):
        distributed.prelabel(model, X, rows=np.array([0, len(X)]), use_ray=False)
    with pytest.raises(ValidationError, match="predict_proba"):
        distributed.prelabel(object(), X, use_ray=False)
    with pytest.raises(ConfigError):
        distributed.Prelabeler(use_ray="sometimes")


def test_small_pool_stays_in_process_under_auto(pool_data):
    X, model = pool_data
    p = distributed.Prelabeler()  # default threshold: 100,000 rows
    p.predict_proba(model, X[:1000])
    assert p.backend_ == "in-process"
    assert "probe" not in p.timings_


@pytest.mark.parametrize("strategy", ["margin", "least_confident", "entropy"])
def test_select_sharded_in_process_is_exact_with_ties(strategy):
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(4), 30_000).round(2)  # rounding makes many ties
    P /= P.sum(1, keepdims=True)
    for k in (1, 250, 30_000):
        a = select(strategy, k, proba=P)
        b = distributed.select_sharded(P, k, strategy, shard_rows=3001, use_ray=False)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_select_sharded_names_the_bad_row_of_the_whole_pool():
    P = np.full((100, 2), 0.5)
    P[73, 0] = np.nan
    with pytest.raises(ValidationError) as err:
        distributed.select_sharded(P, 5, shard_rows=10, use_ray=False)
    assert err.value.item == 73
    with pytest.raises(EmptyPoolError):
        distributed.select_sharded(np.zeros((0, 2)), 5, use_ray=False)


@pytest.mark.parametrize("n_shards", [2, 7])
def test_dawid_skene_sharded_in_process_matches_aggregator(n_shards):
    t, w, y, nt, nw, k = _crowd()
    ref = DawidSkene().fit(t, w, y, n_tasks=nt + 5, n_workers=nw, n_classes=k)  # 5 tasks without answers
    got = distributed.fit_dawid_skene(t, w, y, n_tasks=nt + 5, n_workers=nw, n_classes=k,
                                      n_shards=n_shards, use_ray=False)
    assert got.backend_ == "in-process" and got.n_shards_ == n_shards
    assert got.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(got.posteriors_, ref.posteriors_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.confusions_, ref.confusions_, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got.labels_, ref.labels_)


def test_dawid_skene_sharded_with_prior_and_float32():
    t, w, y, nt, nw, k = _crowd(n_tasks=2000, seed=3)
    prior = np.random.default_rng(3).dirichlet(np.ones(k), nt)
    for dtype, tol in (("float64", 1e-9), ("float32", 1e-4)):
        agg = DawidSkene(dtype=dtype, n_iter=30)
        ref = DawidSkene(dtype=dtype, n_iter=30).fit(t, w, y, n_tasks=nt, n_workers=nw, n_classes=k, prior=prior)
        got = distributed.fit_dawid_skene(t, w, y, n_tasks=nt, n_workers=nw, n_classes=k, prior=prior,
                                          aggregator=agg, n_shards=3, use_ray=False)
        assert got is agg
        np.testing.assert_allclose(got.posteriors_, ref.posteriors_, rtol=0, atol=tol)


def test_dawid_skene_sharded_rejects_other_aggregators():
    from hitl.aggregation import MajorityVote

    with pytest.raises(ConfigError, match="DawidSkene"):
        distributed.fit_dawid_skene([0], [0], [0], aggregator=MajorityVote(), use_ray=False)
    with pytest.raises(ValidationError):
        distributed.fit_dawid_skene([0, 1], [0], [0], use_ray=False)


def test_module_works_without_ray():
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import numpy as np\n"
        "from hitl import distributed as d\n"
        "from hitl.errors import ConfigError\n"
        "assert not d.ray_available() and not d.is_connected()\n"
        "class M:\n"
        "    def predict_proba(self, X): return np.asarray(X)[:, :2]\n"
        "X = np.random.default_rng(0).random((200_000, 3))\n"
        "p = d.Prelabeler(shard_rows=50_000)\n"
        "assert np.array_equal(p.predict_proba(M(), X), X[:, :2]) and p.backend_ == 'in-process'\n"
        "try:\n"
        "    d.prelabel(M(), X, use_ray=True)\n"
        "except ConfigError as e:\n"
        "    print('refused:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "hitl[ray]" in out.stdout


def test_aggregate_dispatches_in_process_below_threshold():
    from hitl.aggregation import MajorityVote

    t, w, y, nt, nw, k = _crowd(n_tasks=500, seed=4)
    ds = distributed.aggregate(DawidSkene(), t, w, y, n_tasks=nt, n_workers=nw, n_classes=k, use_ray=False)
    ref = DawidSkene().fit(t, w, y, n_tasks=nt, n_workers=nw, n_classes=k)
    np.testing.assert_array_equal(ds.posteriors_, ref.posteriors_)
    mv = distributed.aggregate(MajorityVote(), t, w, y, n_tasks=nt, n_workers=nw, n_classes=k)
    assert isinstance(mv, MajorityVote) and mv.posteriors_.shape == (nt, k)


def test_gpu_actors_only_for_device_models_on_gpu_clusters():
    class TorchLike:
        device = "auto"

    gpus = distributed.ClusterInfo(address="x", local=False, num_cpus=8, num_gpus=2)
    cpus = distributed.ClusterInfo(address="x", local=False, num_cpus=8, num_gpus=0)
    assert distributed._wants_gpu(TorchLike(), "auto", gpus) == 1
    assert distributed._wants_gpu(TorchLike(), "auto", cpus) == 0
    assert distributed._wants_gpu(SklearnModel(LogisticRegression()), "auto", gpus) == 0
    assert distributed._wants_gpu(SklearnModel(LogisticRegression()), 1, cpus) == 1
    with pytest.raises(ConfigError):
        distributed._wants_gpu(TorchLike(), 2, gpus)

    class Movable:
        def to_device(self, device):
            self.moved_to = device

    assert distributed._move_to_gpu(Movable()).moved_to == "cuda"


def test_settings_come_from_the_environment(monkeypatch, pool_data):
    monkeypatch.setenv("HITL_USE_RAY", "0")
    monkeypatch.setenv("HITL_RAY_THRESHOLD_ROWS", "5")
    monkeypatch.setenv("HITL_RAY_NUM_CPUS", "3")
    s = distributed.RaySettings()
    assert (s.use_ray, s.threshold_rows, s.num_cpus) == (False, 5, 3)
    monkeypatch.setattr(distributed, "settings", s)
    X, model = pool_data
    p = distributed.Prelabeler()  # use_ray=None: the setting says no
    p.predict_proba(model, X)
    assert p.backend_ == "in-process" and "probe" not in p.timings_
    monkeypatch.setenv("HITL_USE_RAY", "maybe")
    with pytest.raises(ConfigError, match="HITL_USE_RAY"):
        distributed.RaySettings()
    monkeypatch.setenv("HITL_USE_RAY", "auto")
    monkeypatch.setenv("HITL_RAY_SHARD_ROWS", "0")
    with pytest.raises(ConfigError, match="HITL_RAY_SHARD_ROWS"):
        distributed.RaySettings()


# ------------------------------------------------------------------ on Ray


@pytest.mark.ray
def test_local_start_is_private_and_reports_nothing(ray_session):
    import ray

    info = ray_session
    if not info.local:
        pytest.skip("joined an existing cluster (RAY_ADDRESS)")
    assert distributed.connect() is info  # idempotent
    assert os.path.isfile(os.path.join(info.home, "ray_bootstrap_config.yaml"))
    assert os.path.getsize(os.path.join(info.home, "ray_bootstrap_config.yaml")) == 0
    assert os.environ.get("HOME") != info.home  # only Ray's processes see the private home
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"

    @ray.remote(num_cpus=0)
    def probe():
        from ray._common.usage import usage_lib

        return os.environ.get("HOME"), os.environ.get("RAY_USAGE_STATS_ENABLED"), usage_lib.usage_stats_enabled()

    home, flag, enabled = ray.get(probe.remote())
    assert (home, flag, enabled) == (info.home, "0", False)
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes() if n["Alive"])
    assert info.address.startswith("127.0.0.1:")
    assert info.temp_dir and os.path.isdir(info.temp_dir)


@pytest.mark.ray
def test_prelabel_on_ray_equals_in_process(ray_session, pool_data):
    X, model = pool_data
    local = distributed.prelabel(model, X, use_ray=False, shard_rows=3000)
    p = distributed.Prelabeler(use_ray=True, shard_rows=3000, progress=True)
    got = p.predict_proba(model, X)
    assert p.backend_ == "ray" and p.n_lost_ == 0
    np.testing.assert_array_equal(got, local)
    np.testing.assert_array_equal(got, model.predict_proba(X))
    rows = np.random.default_rng(0).permutation(len(X))[:7000]
    np.testing.assert_array_equal(p.predict_proba(model, X, rows=rows), model.predict_proba(X[rows]))
    assert "put" not in p.timings_  # the pool went to the object store once


@pytest.mark.ray
def test_prelabel_reads_a_memmap_from_its_file(ray_session, pool_data, tmp_path):
    X, model = pool_data
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=X.dtype, shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    p = distributed.Prelabeler(use_ray=True, shard_rows=5000)
    got = p.predict_proba(model, mm)
    assert "put" not in p.timings_
    np.testing.assert_array_equal(got, model.predict_proba(X))


@pytest.mark.ray
def test_killed_actor_loses_and_duplicates_no_row(ray_session):
    import ray

    n = 6000
    X = np.arange(2 * n, dtype=np.float64).reshape(n, 2)
    seen = []
    killed = []

    counts = []

    def kill_one(shard, rows_done):
        seen.append(shard)
        counts.append(rows_done)
        if not killed:
            pool = distributed._POOL["pool"]
            killed.append(ray.get(pool.actors[0].pid.remote()))
            ray.kill(pool.actors[0])

    p = distributed.Prelabeler(use_ray=True, shard_rows=250, n_actors=2, callback=kill_one)
    out = p.predict_proba(SlowEcho(0.05), X)
    np.testing.assert_array_equal(out, X)  # every row, in pool order
    assert sorted(seen) == list(range(24))  # each shard delivered exactly once
    assert counts == sorted(counts) and counts[-1] == p.rows_done_ == n
    assert p.n_lost_ >= 1  # the killed actor had work in flight, and it was run again
    pool = distributed._POOL["pool"]
    assert pool.replaced >= 1
    pids = set(ray.get([a.pid.remote() for a in pool.actors]))
    assert killed[0] not in pids and len(pids) == 2


@pytest.mark.ray
def test_auto_choice_uses_ray_only_when_it_pays(ray_session):
    X = np.arange(6000, dtype=np.float64).reshape(3000, 2)
    distributed.prelabel(SlowEcho(0.0), X, use_ray=True, shard_rows=100, n_actors=2)  # warm pool
    slow = distributed.Prelabeler(threshold_rows=1000, shard_rows=100, n_actors=2)
    np.testing.assert_array_equal(slow.predict_proba(SlowEcho(0.2), X), X)
    assert slow.backend_ == "ray", slow.timings_
    fast = distributed.Prelabeler(threshold_rows=1000, shard_rows=100, n_actors=2)
    np.testing.assert_array_equal(fast.predict_proba(SlowEcho(0.0), X), X)
    assert fast.backend_ == "in-process", fast.timings_
    assert fast.timings_["estimate_ray"] > fast.timings_["estimate_in_process"]


@pytest.mark.ray
@pytest.mark.parametrize("strategy", ["margin", "entropy"])
def test_select_sharded_on_ray_is_exact(ray_session, strategy):
    rng = np.random.default_rng(2)
    P = rng.dirichlet(np.ones(3), 50_000).round(2)
    P /= P.sum(1, keepdims=True)
    a = select(strategy, 300, proba=P)
    b = distributed.select_sharded(P, 300, strategy, shard_rows=6000, use_ray=True)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.ray
def test_dawid_skene_on_ray_matches_aggregator(ray_session):
    t, w, y, nt, nw, k = _crowd(n_tasks=20_000, seed=5)
    ref = DawidSkene().fit(t, w, y, n_tasks=nt, n_workers=nw, n_classes=k)
    got = distributed.fit_dawid_skene(t, w, y, n_tasks=nt, n_workers=nw, n_classes=k, use_ray=True)
    assert got.backend_ == "ray" and got.n_shards_ == 2
    np.testing.assert_allclose(got.posteriors_, ref.posteriors_, rtol=0, atol=1e-9)
    assert got.n_iter_ == ref.n_iter_


@pytest.mark.ray
def test_dawid_skene_on_ray_survives_a_dead_actor(ray_session):
    import ray

    t, w, y, nt, nw, k = _crowd(n_tasks=3000, seed=6)
    ref = DawidSkene().fit(t, w, y, n_tasks=nt, n_workers=nw, n_classes=k)
    pool = distributed._actor_pool(None, 0)
    before = pool.replaced
    ray.kill(pool.actors[1])
    got = distributed.fit_dawid_skene(t, w, y, n_tasks=nt, n_workers=nw, n_classes=k, n_shards=4, use_ray=True)
    assert pool.replaced > before
    np.testing.assert_allclose(got.posteriors_, ref.posteriors_, rtol=0, atol=1e-9)


@pytest.mark.ray
def test_shared_model_and_pool_go_to_the_object_store_once(ray_session, pool_data):
    X, model = pool_data
    m, xs = distributed.share(model), distributed.share(X)
    p = distributed.Prelabeler(use_ray=True, shard_rows=5000)
    first = p.predict_proba(m, xs)
    ref_m, ref_x = m.ref, xs.ref
    second = p.predict_proba(m, xs, rows=np.arange(100, 9000))
    assert m.ref is ref_m and xs.ref is ref_x and "put" not in p.timings_
    np.testing.assert_array_equal(first, model.predict_proba(X))
    np.testing.assert_array_equal(second, first[100:9000])
    local = distributed.prelabel(m, xs, use_ray=False, shard_rows=5000)  # the same wrappers in-process
    np.testing.assert_array_equal(local, first)


@pytest.mark.ray
def test_model_errors_on_ray_keep_their_type(ray_session):
    with pytest.raises(ValidationError, match="is NaN"):
        distributed.prelabel(Refuses(), np.zeros((10, 2)), use_ray=True, shard_rows=5)
    distributed.release()  # actors drop what they kept; the next job loads again
    X = np.arange(20.0).reshape(10, 2)
    np.testing.assert_array_equal(distributed.prelabel(SlowEcho(0.0), X, use_ray=True, shard_rows=5), X)
