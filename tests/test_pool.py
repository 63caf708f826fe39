import numpy as np
import pytest

import hitl
from hitl.errors import HitlError, PoolError


def test_pool_basics():
    pool = hitl.Pool(np.zeros((4, 3)), ids=["a", "b", "c", "d"], allowed_countries=[None, ["FR"], "KE", ("FR", "TG")])
    assert len(pool) == 4 and pool.index_of("c") == 2
    assert pool.index_of(["d", "a"]).tolist() == [3, 0]
    got = pool.may_go_to(["FR", "TG", "KE", "US"])
    assert got.astype(int).tolist() == [[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]]
    assert pool.may_go_to(["FR"], items=np.array([2])).tolist() == [[False]]


def test_default_ids_and_memmap_kept(tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(10, 2))
    pool = hitl.Pool(mm)
    assert pool.X is mm
    assert pool.ids.tolist() == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    "kwargs, field, item",
    [
        (dict(X=np.zeros(3)), "X", None),
        (dict(X=np.array([["a", "b"]])), "X", None),
        (dict(X=np.array([[0.0, np.nan], [1.0, 2.0]])), "X", 0),
        (dict(X=np.array([[0.0, 1.0], [np.inf, 2.0]])), "X", 1),
        (dict(X=np.zeros((3, 2)), ids=["a", "b", "a"]), "ids", "a"),
        (dict(X=np.zeros((3, 2)), ids=["a", "b"]), "ids", None),
        (dict(X=np.zeros((2, 2)), ids=["a", None]), "ids", 1),
        (dict(X=np.zeros((2, 2)), ids=["a", "b"], allowed_countries=[None]), "allowed_countries", None),
        (dict(X=np.zeros((2, 2)), ids=["a", "b"], allowed_countries=[None, ["france"]]), "allowed_countries", "b"),
        (dict(X=np.zeros((2, 2)), ids=["a", "b"], allowed_countries=[[], None]), "allowed_countries", "a"),
        (dict(X=np.zeros((2, 2)), ids=["a", "b"], item_types=["x", ""]), "item_types", "b"),
    ],
)
def test_bad_pools_are_refused_naming_item_and_field(kwargs, field, item):
    X = kwargs.pop("X")
    with pytest.raises(PoolError) as err:
        hitl.Pool(X, **kwargs)
    assert isinstance(err.value, HitlError)
    assert err.value.field == field
    assert err.value.item == item
    assert field in str(err.value)


def test_unknown_id():
    pool = hitl.Pool(np.zeros((2, 1)), ids=["a", "b"])
    with pytest.raises(PoolError, match="'zz'"):
        pool.index_of("zz")
