"""Label Studio round trip: export tasks with predictions, import an export back as answers."""

import base64
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from hitl.errors import ConflictingAnswerError, DataFormatError, ValidationError
from hitl.human import AnswersPending, HumanWorkforce, png_bytes
from hitl.labelstudio import export_tasks, import_annotations, label_config, read_annotations
from hitl.store import Store
from hitl.workforce import HITer
from test_queue import CLASSES, PEOPLE, make_store

FIXTURES = Path(__file__).parent / "fixtures" / "labelstudio"
USERS = {11: "ann", "bob@example.org": "bob", 12: "bob", 13: "cid"}
HAS_PRIORS = "priors" in inspect.signature(Store.begin_round).parameters


def answers(store):
    names = {w["idx"]: w["id"] for w in store.workers()}
    rows = store._db.execute("SELECT i.id, a.worker, a.label, a.seconds FROM answers a JOIN items i ON i.idx = a.item")
    return sorted((item, names[w], CLASSES[lab], round(s, 3)) for item, w, lab, s in rows)


def project_with_tasks(path, content="text"):
    """Round 0 of the test project: it-0 ann, it-1 bob, it-2 cid (an audit), it-3 ann and bob, it-4 bob, it-5 ann."""
    store = make_store(path, allowed=[None, None, None, None, None, ["FR"]])
    items = np.array([0, 1, 2, 3, 3, 4, 5])
    workers = np.array([0, 1, 2, 0, 1, 1, 0])
    kinds = ["label", "label", "audit", "label", "label", "label", "label"]
    kw = {}
    if HAS_PRIORS:
        proba = np.array([[0.1, 0.8, 0.1], [1 / 3] * 3, [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1],
                          [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]])
        kw["priors"] = (items, proba)
    store.begin_round(0, items=items, workers=workers, kind=kinds, **kw)
    if content == "text":
        people = HumanWorkforce([HITer(h, c) for h, c in PEOPLE], texts=[f"text of {i}" for i in range(6)], store=store)
    else:
        imgs = np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2) * 10
        people = HumanWorkforce([HITer(h, c) for h, c in PEOPLE], images=imgs, store=store)
    people.post(np.arange(6))
    return store, people


def test_label_config_escapes_names():
    xml = label_config(['a "b"', "c<d"], "image")
    assert '<Choice value=\'a "b"\'/>' in xml and '<Choice value="c&lt;d"/>' in xml
    assert '<Image name="image" value="$image"/>' in xml
    with pytest.raises(ValidationError):
        label_config(["a"], "audio")


def test_export_has_data_and_scored_predictions(tmp_path):
    store, _ = project_with_tasks(tmp_path / "p.db", content="image")
    out = tmp_path / "tasks.json"
    tasks = export_tasks(store, out)
    assert json.loads(out.read_text()) == tasks
    assert [t["data"]["hitl_item"] for t in tasks] == [f"it-{i}" for i in range(6)]
    for t in tasks:
        head, b64 = t["data"]["image"].split(",", 1)
        assert head == "data:image/png;base64"
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    if not HAS_PRIORS:
        pytest.skip("this store does not record the model's priors")
    preds = {t["data"]["hitl_item"]: t.get("predictions") for t in tasks}
    assert preds["it-0"] == [{"model_version": "hitl", "score": pytest.approx(0.8), "result": [
        {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["dog"]}}]}]
    assert preds["it-1"] is None  # a uniform prior: no model yet
    assert preds["it-2"] is None  # an audit is judged without the model's guess
    assert preds["it-4"][0]["result"][0]["value"]["choices"] == ["cow"]
    assert preds["it-4"][0]["score"] == pytest.approx(0.6)


def test_round_trip_export_annotate_import(tmp_path):
    store, people = project_with_tasks(tmp_path / "p.db")
    tasks = export_tasks(store)
    # What Label Studio gives back once people have annotated (its JSON export).
    given = {"it-0": (11, "cow", 3.0), "it-1": (12, "dog", 4.5), "it-3": (11, "dog", 2.0), "it-4": (12, "cat", 8.25)}
    export = []
    for n, t in enumerate(tasks):
        task = dict(t, id=500 + n, annotations=[])
        if t["data"]["hitl_item"] in given:
            user, label, secs = given[t["data"]["hitl_item"]]
            task["annotations"].append({"id": 900 + n, "completed_by": user, "lead_time": secs, "was_cancelled": False,
                                        "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                                    "value": {"choices": [label]}}]})
        export.append(task)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    report = import_annotations(store, path, {11: "ann", 12: "bob"})
    assert report == {"recorded": 4, "already": 0, "reassigned": 0, "capped": 0, "time_limit": 300.0, "skipped": []}
    assert answers(store) == sorted((item, USERS[u], lab, s) for item, (u, lab, s) in given.items())
    # Importing the same export again writes nothing.
    before = answers(store)
    assert import_annotations(store, path, {11: "ann", 12: "bob"})["already"] == 4
    assert answers(store) == before
    # A HumanWorkforce waiting on the round sees the imported answers as any others.
    chunks = []
    people.timeout = 0
    pending_items, pending_workers = store.assignments(0)
    with pytest.raises(AnswersPending):
        for c in people.collect(pending_items, pending_workers):
            chunks.append(c)
    assert sum(len(c) for c in chunks) == 4


def test_import_a_label_studio_export_fixture(tmp_path):
    store, _ = project_with_tasks(tmp_path / "p.db")
    report = import_annotations(store, FIXTURES / "export.json", USERS)
    assert report["recorded"] == 5 and report["already"] == 0
    assert report["reassigned"] == 1  # bob answered it-2, which was cid's: cid's pending assignment moved to bob
    assert report["skipped"] == [{"task": 105, "item_id": "it-5", "hiter": "cid", "reason": "residency"}]
    assert answers(store) == [("it-0", "ann", "dog", 4.2), ("it-1", "bob", "cow", 7.5), ("it-2", "bob", "dog", 6.0),
                              ("it-3", "ann", "cat", 3.1), ("it-3", "bob", "cat", 5.0)]
    assert [e["payload"] for e in store.events("reassigned")] == [{"item": 2, "from": 2, "to": 1}]
    report = import_annotations(store, FIXTURES / "export_min.json", USERS)
    assert report["recorded"] == 1
    assert ("it-4", "bob", "cow", 2.0) in answers(store)


def test_read_annotations_skips_cancelled_and_names_what_is_wrong(tmp_path):
    recs = read_annotations(FIXTURES / "export.json")
    assert len(recs) == 6  # seven annotations, one cancelled
    assert recs[1] == {"task": 102, "item_id": "it-1", "annotator": "12", "email": "bob@example.org", "label": "cow",
                       "seconds": 7.5}
    bad = json.loads((FIXTURES / "export.json").read_text())
    bad[0]["annotations"][0]["lead_time"] = -3
    with pytest.raises(DataFormatError) as err:
        read_annotations(bad)
    assert (err.value.item, err.value.field) == (101, "lead_time")
    del bad[0]["data"]["hitl_item"]
    with pytest.raises(DataFormatError, match="hitl_item"):
        read_annotations(bad)
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(DataFormatError):
        read_annotations(tmp_path / "x.json")


def test_import_refuses_bad_exports_before_writing(tmp_path):
    store, _ = project_with_tasks(tmp_path / "p.db")
    export = json.loads((FIXTURES / "export.json").read_text())
    with pytest.raises(ValidationError, match="not mapped"):
        import_annotations(store, export, {11: "ann"})  # users 12 and 13 unknown
    wrong = json.loads(json.dumps(export))
    wrong[3]["annotations"][0]["result"][0]["value"]["choices"] = ["horse"]
    with pytest.raises(ValidationError, match="horse"):
        import_annotations(store, wrong, USERS)
    twice = json.loads(json.dumps(export))
    twice[0]["annotations"].append(dict(twice[0]["annotations"][0], result=[
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["cat"]}}]))
    with pytest.raises(ConflictingAnswerError):
        import_annotations(store, twice, USERS)
    assert answers(store) == []


def ls_main(argv):
    """``hitl labelstudio ...``, through the module's own sub-command registration."""
    import argparse

    from hitl import labelstudio

    parser = argparse.ArgumentParser(prog="hitl")
    labelstudio.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_labelstudio_command(tmp_path, capsys):
    store, _ = project_with_tasks(tmp_path / "p.db")
    store.close()
    db = str(tmp_path / "p.db")
    assert ls_main(["labelstudio", "export", db, str(tmp_path / "t.json"), "--config", str(tmp_path / "c.xml")]) == 0
    assert len(json.loads((tmp_path / "t.json").read_text())) == 6
    assert '<Text name="text" value="$text"/>' in (tmp_path / "c.xml").read_text()
    args = ["labelstudio", "import", db, str(FIXTURES / "export.json"), "--annotator", "11=ann",
            "--annotator", "12=bob", "--annotator", "13=cid"]
    assert ls_main(args) == 0
    out = capsys.readouterr().out
    assert "5 answer(s) recorded" in out and "residency" in out
    assert len(Store(db).answers()["item"]) == 5
