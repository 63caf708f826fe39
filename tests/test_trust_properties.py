"""Property tests: whatever a workforce or a Label Studio export hands over is stored exactly or refused whole.

"Stored exactly" means: one answer per (item, HITer), with the label given and the time
on task given (capped at the task's time limit, which is documented); "refused" means a
:class:`hitl.errors.HitlError` and a store that is byte for byte what it was before.
Any other exception, or a store half-written, fails.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import hitl
from hitl.errors import HitlError
from hitl.models import SklearnModel
from hitl.workforce import Answers

N_ITEMS, K = 12, 3
JUNK = st.one_of(st.none(), st.text(max_size=3), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(-(2**70), 2**70))


def _dump(store):
    return {t: store._db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
            for t in ("answers", "assignments", "events", "labels", "rounds")}


class _Scripted:
    """A workforce whose output is whatever the test says."""

    def __init__(self, hiters, chunks):
        self.hiters, self.chunks, self.n_classes = hiters, chunks, K

    def collect(self, items, workers, item_ids=None):
        yield from self.chunks


def _project_with_a_round():
    y = np.arange(N_ITEMS) % K
    crowd = hitl.SimulatedCrowd.from_profile("experts", 3, truth=y, n_classes=K, random_state=0)
    project = hitl.LabelingProject(hitl.Pool(np.arange(2 * N_ITEMS, dtype=float).reshape(N_ITEMS, 2)),
                                   SklearnModel(LogisticRegression(), n_classes=K), workforce=crowd, progress=False)
    # Round 0: items 0-5 to HITer 0, items 3-8 to HITer 1 (store and workforce positions agree here).
    items = np.r_[0:6, 3:9]
    workers = np.r_[np.zeros(6, int), np.ones(6, int)]
    project.store.begin_round(0, items, workers)
    return project, set(zip(items.tolist(), workers.tolist()))


@st.composite
def answer_rows(draw):
    """Rows (item, worker, label, seconds): mostly plausible, sometimes repeated, sometimes junk."""
    good_item = st.integers(0, N_ITEMS + 2)
    good_worker = st.integers(0, 3)
    good_label = st.integers(-1, K + 1)
    good_secs = st.one_of(st.floats(0, 1e4), st.sampled_from([0.0, 600.0, 259200.0, 1e308, -1.0]))
    row = st.tuples(*(st.one_of(g, JUNK) if draw(st.booleans()) and draw(st.integers(0, 9)) == 0 else g
                      for g in (good_item, good_worker, good_label, good_secs)))
    rows = draw(st.lists(row, max_size=8))
    if rows and draw(st.booleans()):
        rows.append(draw(st.sampled_from(rows)))  # an exact repeat
    return rows


def _expected(rows, assigned, limit):
    """What storing ``rows`` exactly means, or None when they must be refused."""
    out = {}
    for item, worker, label, secs in rows:
        # Whole numbers: integers, or floats holding one (2.0 is 2; 2.5 is refused, never truncated).
        ints = all(not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()
                                                                        and abs(v) <= 2**53))
                   for v in (item, worker, label))
        number = isinstance(secs, (int, float)) and not isinstance(secs, bool)
        if not (ints and number and 0 <= label < K and np.isfinite(secs) and secs >= 0
                and (int(item), int(worker)) in assigned):
            return None
        item, worker, label = int(item), int(worker), int(label)
        if out.get((item, worker), (label,))[0] != label:
            return None  # one HITer, one item, two labels
        out[(item, worker)] = (label, min(float(secs), limit))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=answer_rows())
def test_any_workforce_output_is_stored_exactly_or_refused_whole(rows):
    project, assigned = _project_with_a_round()
    cols = list(zip(*rows)) if rows else [[], [], [], []]
    arrays = []
    for col in cols:
        try:
            arrays.append(np.asarray(col))
        except (TypeError, ValueError, OverflowError):
            arrays.append(np.asarray(col, dtype=object))
    project.workforce = _Scripted(project.workforce.hiters, [Answers(*arrays)])
    before = _dump(project.store)
    # Judged on what the engine receives: the arrays (numpy may already have turned True into 1).
    seen = list(zip(*(a.tolist() for a in arrays)))
    expected = _expected(seen, assigned, project.store.task_seconds())
    try:
        project._collect(0)
    except HitlError:
        assert _dump(project.store) == before
        assert expected is None, f"refused a valid chunk: {rows}"
        return
    assert expected is not None, f"stored a chunk that should have been refused: {rows}"
    stored = {(i, w): (lab, s) for i, w, lab, _, s, _ in project.store._db.execute("SELECT * FROM answers")}
    assert stored == expected


# -- Label Studio exports ----------------------------------------------------------------------------------------------
ITEM_IDS = [f"it-{i}" for i in range(6)]
USERS = {11: "ann", 12: "bob", 13: "cid"}
LABELS = ["cat", "dog", "cow"]


@st.composite
def label_studio_exports(draw):
    def maybe_junk(strategy):
        return st.one_of(strategy, JUNK) if draw(st.integers(0, 14)) == 0 else strategy

    # Mostly well-formed, so that many exports record answers; now and then junk anywhere.
    choices = st.one_of(st.lists(st.sampled_from(LABELS), min_size=1, max_size=1),
                        st.lists(st.sampled_from(LABELS + ["yak"]), max_size=2))
    annotation = st.fixed_dictionaries({
        "completed_by": maybe_junk(st.sampled_from([11, 12, 13, 11, 12, 13, 99])),
        "lead_time": maybe_junk(st.one_of(st.floats(0, 1e6), st.sampled_from([0, 4.5, 1e308, -3, None]))),
        "was_cancelled": st.sampled_from([False, False, False, True]),
        "result": maybe_junk(st.lists(st.fixed_dictionaries({
            "from_name": st.just("label"), "to_name": st.just("text"),
            "type": st.sampled_from(["choices", "choices", "choices", "labels"]),
            "value": st.fixed_dictionaries({"choices": maybe_junk(choices)})}), min_size=1, max_size=2)),
    })
    task = st.fixed_dictionaries({
        "id": st.integers(1, 50),
        "data": st.fixed_dictionaries({"text": st.just("t"), "hitl_item": maybe_junk(st.sampled_from(ITEM_IDS + ["x"]))}),
        "annotations": maybe_junk(st.lists(annotation, min_size=1, max_size=2)),
    })
    return draw(st.lists(task, max_size=4))


@pytest.fixture(scope="module")
def ls_store_factory(tmp_path_factory):
    from test_labelstudio import project_with_tasks

    counter = iter(range(10**6))

    def make():
        store, _ = project_with_tasks(tmp_path_factory.mktemp("ls") / f"p{next(counter)}.db")
        return store

    return make


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(export=label_studio_exports())
def test_any_label_studio_export_is_stored_exactly_or_refused_whole(export, ls_store_factory):
    from hitl.labelstudio import import_annotations, read_annotations

    store = ls_store_factory()
    before = _dump(store)
    try:
        report = import_annotations(store, export, USERS)
    except HitlError:
        assert _dump(store) == before
        return
    records = read_annotations(export)
    after = _dump(store)
    new = [row for row in after["answers"] if row not in before["answers"]]
    assert len(new) == report["recorded"]
    names = {w["idx"]: w["id"] for w in store.workers()}
    index = {i: item_id for item_id, i in store._db.execute("SELECT id, idx FROM items")}
    limit = store.task_seconds()
    given: dict = {}
    for r in records:  # a repeat of the same answer is a no-op: the first one's time stands
        given.setdefault((r["item_id"], USERS[int(r["annotator"])]), (r["label"], min(r["seconds"], limit)))
    for item, worker, label, _round, seconds, _at in new:
        assert given[(index[item], names[worker])] == (LABELS[label], seconds)
