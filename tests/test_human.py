"""HumanWorkforce: what HITers see, and the engine's loop waiting for real answers."""

import threading
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import hitl
from hitl.errors import ConfigError, DataFormatError, ValidationError
from hitl.human import AnswersPending, HumanWorkforce, png_bytes, sniff_image, to_uint8
from hitl.models import SklearnModel
from hitl.queue import TaskQueue

CLASSES = ["zero", "one", "two"]
PEOPLE = [hitl.HITer("ann", "FR"), hitl.HITer("bob", "TG")]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(n_class=3, return_X_y=True)
    return X[:60], y[:60]


def make_project(path, X, people, **kw):
    model = SklearnModel(LogisticRegression(max_iter=300), n_classes=3)
    project = hitl.LabelingProject(hitl.Pool(X), model, workforce=people, classes=CLASSES, store=str(path),
                                   progress=False, **kw)
    people.bind(project)
    return project


class Answerer(threading.Thread):
    """HITers working straight on the queue (no web server), from their own connection."""

    def __init__(self, path, truth, stop, names=("ann", "bob"), limit=None):
        super().__init__(daemon=True)
        self.path, self.truth, self.stop, self.names, self.limit = path, truth, stop, names, limit
        self.done = 0

    def run(self):
        q = TaskQueue(self.path)
        workers = q.store.worker_positions(list(self.names)).tolist()
        deadline = time.monotonic() + 40
        while not self.stop.is_set() and time.monotonic() < deadline:
            worked = False
            for w in workers:
                if self.limit is not None and self.done >= self.limit:
                    return
                t = q.next_task(w)
                if t is not None:
                    q.submit(w, t.item, int(self.truth[t.item]))
                    self.done += 1
                    worked = True
            if not worked:
                time.sleep(0.02)
        q.close()


def test_png_encoding_matches_an_imaging_library():
    Image = pytest.importorskip("PIL.Image")
    import io

    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (5, 7), dtype=np.uint8), rng.integers(0, 256, (4, 3, 3), dtype=np.uint8),
                rng.integers(0, 256, (2, 6, 4), dtype=np.uint8)):
        data = png_bytes(img)
        assert sniff_image(data) == "image/png"
        back = np.asarray(Image.open(io.BytesIO(data)))
        np.testing.assert_array_equal(back, img)


def test_images_are_scaled_and_checked():
    np.testing.assert_array_equal(to_uint8(np.array([[0.0, 8.0], [16.0, 4.0]])), [[0, 128], [255, 64]])
    np.testing.assert_array_equal(to_uint8(np.array([[0.0, 8.0]]), (0, 16)), [[0, 128]])
    np.testing.assert_array_equal(to_uint8(np.array([[True, False]])), [[255, 0]])
    assert to_uint8(np.full((2, 2), 3.0)).max() == 0  # a flat image stays flat
    with pytest.raises(ValidationError, match="NaN"):
        to_uint8(np.array([[np.nan, 1.0]]), item=7)
    with pytest.raises(ValidationError, match="shape"):
        to_uint8(np.zeros((2, 2, 2)))
    people = HumanWorkforce(PEOPLE, images=np.zeros((3, 12)), image_shape=(3, 4))
    kind, mime, body = people.content(1)
    assert (kind, mime, body[:4]) == ("image", "image/png", b"\x89PNG")
    with pytest.raises(ValidationError) as err:
        HumanWorkforce(PEOPLE, images=np.zeros((3, 12)), image_shape=(5, 5)).content(2)
    assert err.value.item == 2


def test_texts_and_files(tmp_path):
    people = HumanWorkforce(PEOPLE, texts=["a cat", "un chien"])
    assert people.content(1) == ("text", "text/plain", "un chien".encode())
    good = tmp_path / "a.bin"
    good.write_bytes(png_bytes(np.zeros((2, 2), np.uint8)))  # the name does not matter, the bytes do
    jpeg = tmp_path / "b.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    fake = tmp_path / "c.png"
    fake.write_text("<script>alert(1)</script>")
    people = HumanWorkforce(PEOPLE, files=[good, jpeg, fake, tmp_path / "missing.png"])
    assert people.content(0)[1] == "image/png" and people.content(1)[1] == "image/jpeg"
    with pytest.raises(DataFormatError, match="not a PNG"):
        people.content(2)
    with pytest.raises(DataFormatError, match="cannot be read"):
        people.content(3)


def test_settings_are_checked():
    with pytest.raises(ConfigError):
        HumanWorkforce(PEOPLE)
    with pytest.raises(ConfigError):
        HumanWorkforce(PEOPLE, texts=["a"], images=np.zeros((1, 2, 2)))
    with pytest.raises(ConfigError):
        HumanWorkforce([], texts=["a"])
    with pytest.raises(ConfigError):
        HumanWorkforce(PEOPLE + PEOPLE[:1], texts=["a"])
    with pytest.raises(ConfigError):
        HumanWorkforce(PEOPLE, texts=["a"], timeout=-1)
    with pytest.raises(ConfigError, match="bind"):
        list(HumanWorkforce(PEOPLE, texts=["a"]).collect(np.array([0]), np.array([0])))


def test_a_round_waits_for_people_and_times_out_leaving_it_open(tmp_path, digits):
    X, y = digits
    people = HumanWorkforce(PEOPLE, images=X, image_shape=(8, 8), timeout=0.3, poll_interval=0.02, progress=False)
    project = make_project(tmp_path / "p.db", X, people)
    t0 = time.monotonic()
    assert project.step(batch_size=6) == "waiting"  # the round stays open, nothing raised
    assert 0.3 <= time.monotonic() - t0 < 10
    r = project.store.open_round()
    assert r == 0  # nothing was closed without its answers
    pending_items, _ = project.store.assignments(r, pending=True)
    assert TaskQueue(project.store).posted(pending_items).all()  # every task is showable
    # People answer some of the tasks; the next step collects them and keeps waiting for the rest.
    stop = threading.Event()
    some = Answerer(tmp_path / "p.db", y, stop, limit=2)
    some.start()
    some.join(20)
    assert project.step(batch_size=6) == "waiting"
    assert project.store.n_answers() == 2 and project.store.open_round() == 0
    rest = Answerer(tmp_path / "p.db", y, stop)
    rest.start()
    people.timeout = 20
    try:
        for _ in range(5):  # the round closes once every answer (and any extra one asked) is in
            if project.step(batch_size=6) is None and project.store.open_round() is None:
                break
    finally:
        stop.set()
        rest.join(10)
    assert project.store.rounds()[0]["status"] == "done"
    assert project.store.assignments(0, pending=True)[0].size == 0


def test_run_completes_with_people_answering_through_the_queue(tmp_path, digits):
    X, y = digits
    people = HumanWorkforce(PEOPLE, images=X, image_shape=(8, 8), timeout=30, poll_interval=0.02, progress=False)
    project = make_project(tmp_path / "p.db", X, people, budget=hitl.Budget(answers=20))
    stop = threading.Event()
    crowd = Answerer(tmp_path / "p.db", y, stop)
    crowd.start()
    try:
        result = project.run(batch_size=5)
    finally:
        stop.set()
        crowd.join(10)
    assert result.stop_reason == "budget"
    assert result.summary["human_answers"] == 20 == crowd.done
    ans = project.store.answers()
    assert (ans["label"] == y[ans["item"]]).all()  # exactly what the HITers gave
    assert (ans["seconds"] >= 0).all()
    assert len(set(zip(ans["item"].tolist(), ans["worker"].tolist()))) == 20


def test_collect_yields_answers_in_workforce_positions(tmp_path, digits):
    X, y = digits
    # The store knows bob first: workforce positions and store positions differ.
    people = HumanWorkforce(PEOPLE[::-1], texts=[f"t{i}" for i in range(len(X))], timeout=5, poll_interval=0.02,
                            progress=False)
    project = make_project(tmp_path / "p.db", X, people)
    people2 = HumanWorkforce(PEOPLE, texts=[f"t{i}" for i in range(len(X))], timeout=5, poll_interval=0.02,
                             progress=False, store=project.store)
    store = project.store
    store.begin_round(0, items=np.array([3, 4]), workers=store.worker_positions(["ann", "bob"]))
    stop = threading.Event()
    crowd = Answerer(tmp_path / "p.db", y, stop)
    crowd.start()
    try:
        chunks = list(people2.collect(np.array([3, 4]), np.array([0, 1]), np.array(["3", "4"])))
    finally:
        stop.set()
        crowd.join(10)
    got = sorted((int(i), int(w), int(lab)) for c in chunks for i, w, lab in zip(c.item, c.worker, c.label))
    assert got == [(3, 0, int(y[3])), (4, 1, int(y[4]))]  # ann is position 0 of people2, bob 1


def test_issue_tokens_for_registered_hiters(tmp_path, digits):
    X, _ = digits
    people = HumanWorkforce(PEOPLE, texts=["x"] * len(X), progress=False)
    project = make_project(tmp_path / "p.db", X, people)
    tokens = people.issue_tokens(admin=True)
    assert sorted(tokens) == ["admin", "ann", "bob"]
    q = TaskQueue(project.store)
    assert q.verify_token(tokens["bob"]).hiter_id == "bob"
    with pytest.raises(hitl.errors.StoreError):
        people.issue_tokens(["zoe"])
