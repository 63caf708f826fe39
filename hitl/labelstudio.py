"""Label Studio in and out: export tasks with the model's predictions, import annotations as answers.

Teams that label in Label Studio keep doing so: the project posts its round as
usual (:class:`hitl.HumanWorkforce`), :func:`export_tasks` writes the posted tasks
in Label Studio's JSON import format (each with a ``predictions`` entry holding the
model's label and its ``score``), and :func:`import_annotations` reads a Label
Studio JSON export back as answers, mapping annotators to HITers. A waiting
``HumanWorkforce`` sees those answers as if they had come from ``hitl serve``.

Only single-choice classification (a ``Choices`` control) maps to a label; the
labeling config that matches an export comes from :func:`label_config`. Each task
carries ``data.hitl_item`` (the pool item id), which is how annotations find their
item again.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from .errors import ConflictingAnswerError, DataFormatError, StoreError, ValidationError
from .queue import TaskQueue
from .store import Store

ITEM_KEY = "hitl_item"


def label_config(classes: Sequence[str], kind: str = "image", *, from_name: str = "label") -> str:
    """The Label Studio labeling config (XML) matching :func:`export_tasks`' tasks.

    Examples
    --------
    >>> print(label_config(["cat", "dog"], "text"))
    <View>
      <Text name="text" value="$text"/>
      <Choices name="label" toName="text" choice="single" showInline="true">
        <Choice value="cat"/>
        <Choice value="dog"/>
      </Choices>
    </View>
    """
    if kind not in ("image", "text"):
        raise ValidationError(f"is {kind!r}", field="kind", expected="'image' or 'text'")
    tag = "Image" if kind == "image" else "Text"
    choices = "\n".join(f"    <Choice value={quoteattr(str(c))}/>" for c in classes)
    return (f'<View>\n  <{tag} name="{kind}" value="${kind}"/>\n'
            f'  <Choices name={quoteattr(from_name)} toName="{kind}" choice="single" showInline="true">\n'
            f"{choices}\n  </Choices>\n</View>")


def export_tasks(store: Store | str | Path, path: str | Path | None = None, *, pending_only: bool = True,
                 from_name: str = "label", model_version: str = "hitl") -> list[dict]:
    """Posted tasks in Label Studio's JSON import format, with the model's predictions.

    Parameters
    ----------
    store : the project's Store or its path
    path : where to write the JSON list (optional)
    pending_only : bool, default True
        Only items with an assignment still unanswered.
    from_name : name of the ``Choices`` control in the labeling config
    model_version : tag Label Studio shows for the predictions

    Returns
    -------
    list of dict, one task per item: ``data`` (``image`` as a data URI, or ``text``,
    and ``hitl_item``) and, when the model has a guess and the item is not an audit
    or a gold task, ``predictions: [{"model_version", "score", "result"}]``.
    """
    q = TaskQueue(store)
    classes = q.classes()
    db = q.store._db
    sql = ("SELECT q.item, i.id, q.kind, q.mime, q.body, q.suggestion, q.score, "
           "(SELECT COUNT(*) FROM assignments a WHERE a.item = q.item AND a.kind != 'label') "
           "FROM hq_items q JOIN items i ON i.idx = q.item")
    if pending_only:
        sql += (" WHERE EXISTS (SELECT 1 FROM assignments a LEFT JOIN answers b ON b.item = a.item AND b.worker = a.worker "
                "WHERE a.item = q.item AND b.item IS NULL)")
    tasks = []
    for item, item_id, kind, mime, body, sugg, score, not_label in db.execute(sql + " ORDER BY q.item"):
        body = bytes(body)
        if kind == "image":
            data = {"image": f"data:{mime};base64," + base64.b64encode(body).decode("ascii")}
        else:
            data = {"text": body.decode("utf-8")}
        data[ITEM_KEY] = item_id
        task: dict[str, Any] = {"data": data}
        # Audits and gold tasks are judged without the model's guess, here as on the web page.
        if sugg is not None and not not_label:
            task["predictions"] = [{
                "model_version": model_version,
                "score": None if score is None else round(float(score), 6),
                "result": [{"from_name": from_name, "to_name": kind, "type": "choices",
                            "value": {"choices": [classes[sugg]]}}],
            }]
        tasks.append(task)
    if path is not None:
        Path(path).write_text(json.dumps(tasks, indent=1, ensure_ascii=False), encoding="utf-8")
    return tasks


def read_annotations(source: str | Path | Sequence[dict], *, from_name: str | None = None) -> list[dict]:
    """Flatten a Label Studio JSON (or JSON-MIN) export into one record per annotation.

    Returns dicts ``{item_id, annotator, email, label, seconds, task}``; cancelled (skipped)
    annotations are left out. Raises :class:`~hitl.errors.DataFormatError` naming the task
    and field at fault.
    """
    if isinstance(source, (str, Path)):
        try:
            raw = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot be read as JSON ({exc})", item=str(source), field="export") from None
        except RecursionError:
            raise DataFormatError("is nested too deeply to be a Label Studio export", item=str(source),
                                  field="export", expected="a JSON list of tasks") from None
    else:
        raw = source
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise DataFormatError(f"is a {type(raw).__name__}", field="export", expected="a JSON list of tasks")
    out = []
    for n, task in enumerate(raw):
        if not isinstance(task, dict):
            raise DataFormatError(f"is a {type(task).__name__}", item=n, field="task", expected="a JSON object")
        tid = task.get("id", n)
        if "data" in task or "annotations" in task or "completions" in task:
            data = task.get("data") or {}
            item_id = data.get(ITEM_KEY) if isinstance(data, dict) else None
            anns = task.get("annotations", task.get("completions")) or []
            if not isinstance(anns, list):
                raise DataFormatError("is not a list", item=tid, field="annotations")
            for ann in anns:
                if not isinstance(ann, dict):
                    raise DataFormatError("is not an object", item=tid, field="annotations")
                if ann.get("was_cancelled"):
                    continue
                labels = _choices(ann.get("result"), from_name, tid)
                if not labels:
                    continue
                user = ann.get("completed_by")
                email = user.get("email") if isinstance(user, dict) else None
                user_id = user.get("id") if isinstance(user, dict) else user
                out.append(_record(tid, item_id, user_id, email, labels, ann.get("lead_time")))
        else:  # JSON-MIN: one flat object per annotation, data fields at the top
            item_id = task.get(ITEM_KEY)
            key = from_name or next((k for k in ("label", "choice", "choices") if k in task), None)
            value = task.get(key) if key else None
            if value is None:
                continue
            labels = value.get("choices") if isinstance(value, dict) else ([value] if isinstance(value, str) else value)
            user = task.get("annotator")
            out.append(_record(tid, item_id, user, user if isinstance(user, str) and "@" in user else None, labels,
                               task.get("lead_time")))
    return out


def _choices(result: Any, from_name: str | None, tid: Any) -> list[str]:
    if not isinstance(result, list):
        raise DataFormatError("is not a list", item=tid, field="result")
    for r in result:
        if isinstance(r, dict) and r.get("type") == "choices" and (from_name is None or r.get("from_name") == from_name):
            choices = (r.get("value") or {}).get("choices")
            if not isinstance(choices, list):
                raise DataFormatError("has no list of choices", item=tid, field="result.value.choices")
            return choices
    return []


def _record(tid: Any, item_id: Any, user: Any, email: Any, labels: Any, lead_time: Any) -> dict:
    if item_id is None:
        raise DataFormatError(f"has no data.{ITEM_KEY}", item=tid, field=ITEM_KEY,
                              expected="tasks exported by hitl.labelstudio.export_tasks")
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise DataFormatError(f"is {labels!r}", item=tid, field="choices", expected="exactly one chosen label")
    seconds = 0.0 if lead_time is None else lead_time
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise DataFormatError(f"is {lead_time!r}", item=tid, field="lead_time", expected="seconds >= 0")
    if user is None:
        raise DataFormatError("is missing", item=tid, field="completed_by", expected="the annotator")
    return {"task": tid, "item_id": str(item_id), "annotator": str(user), "email": email, "label": labels[0],
            "seconds": float(seconds)}


def import_annotations(store: Store | str | Path, source: str | Path | Sequence[dict],
                       annotators: Mapping[Any, str] | None = None, *, from_name: str | None = None) -> dict:
    """Record a Label Studio export's annotations as answers of the project's HITers.

    Parameters
    ----------
    store : the project's Store or its path
    source : path of the export (JSON or JSON-MIN), or its parsed list
    annotators : mapping from a Label Studio user (id or e-mail) to a HITer id
        Default: annotators are matched to HITers by id or e-mail as they are.
    from_name : the ``Choices`` control to read (default: the first ``choices`` result)

    An annotation answers its HITer's assignment on that item. When the HITer holds
    none, it takes over a pending assignment of the item (the HITer must be allowed to
    see the item, and the assignment may not be under a running lease in the web app).
    Everything is checked before anything is written, and the answers are written in one
    transaction; already-recorded answers are skipped (idempotent). One vote per HITer and
    item: the same annotator giving the item two different labels is refused.

    Returns
    -------
    dict with ``recorded`` (new answers), ``already`` (recorded before), ``reassigned``,
    ``capped`` (answers whose ``lead_time`` was above ``time_limit``, the task's time
    limit of one lease: recorded at the limit) and ``skipped`` (list of ``{task, item_id, hiter, reason}``:
    no pending assignment left on the item, or residency).
    """
    q = TaskQueue(store)
    st = q.store
    classes = q.classes()
    records = read_annotations(source, from_name=from_name)
    items = dict(st._db.execute("SELECT id, idx FROM items").fetchall())
    workers = {w["id"]: w for w in st.workers()}
    mapping = {str(k): v for k, v in (annotators or {}).items()}
    plan = []
    for rec in records:
        hiter = mapping.get(rec["annotator"]) or (mapping.get(rec["email"]) if rec["email"] else None)
        if annotators is None:
            hiter = rec["annotator"] if rec["annotator"] in workers else rec["email"]
        if hiter not in workers:
            raise ValidationError(f"is annotator {rec['email'] or rec['annotator']!r}, not mapped to a HITer",
                                  item=rec["task"], field="completed_by",
                                  expected="annotators={label studio id or e-mail: hiter id} naming registered HITers")
        if rec["item_id"] not in items:
            raise DataFormatError(f"names item {rec['item_id']!r}, not in this project", item=rec["task"], field=ITEM_KEY)
        if rec["label"] not in classes:
            raise ValidationError(f"is {rec['label']!r}", item=rec["task"], field="label", expected=f"one of {classes}")
        plan.append((rec, items[rec["item_id"]], workers[hiter], classes.index(rec["label"])))
    seen: dict[tuple[int, int], int] = {}
    for rec, item, w, label in plan:
        key = (item, w["idx"])
        old = seen.setdefault(key, label)
        stored = st._db.execute("SELECT label FROM answers WHERE item = ? AND worker = ?", key).fetchone()
        if old != label or (stored is not None and stored[0] != label):
            raise ConflictingAnswerError(f"gives {w['id']} two different labels", item=rec["item_id"], field="label",
                                         expected="one label per HITer and item; nothing was written")
    limit = st.task_seconds()
    report = {"recorded": 0, "already": 0, "reassigned": 0, "capped": 0, "time_limit": limit, "skipped": []}
    # One transaction: an import is recorded whole or not at all, never half-written.
    with st.transaction():
        for rec, item, w, label in plan:
            round_no = st.assignment_round(item, w["idx"])
            if round_no is None:
                allowed = st._db.execute("SELECT allowed FROM items WHERE idx = ?", (item,)).fetchone()[0]
                if allowed is not None and w["country"] not in allowed.split(","):
                    report["skipped"].append(dict(task=rec["task"], item_id=rec["item_id"], hiter=w["id"],
                                                  reason="residency"))
                    continue
                round_no = _take_over(q, item, w["idx"])
                if round_no is None:
                    report["skipped"].append(dict(task=rec["task"], item_id=rec["item_id"], hiter=w["id"],
                                                  reason="no pending assignment on this item"))
                    continue
                report["reassigned"] += 1
            new = st.add_answers(round_no, np.array([item]), np.array([w["idx"]]), np.array([label]),
                                 np.array([rec["seconds"]]))
            report["recorded" if new else "already"] += 1
            # The store records at most one lease of time on task (a tab left open is not work).
            report["capped"] += int(bool(new) and rec["seconds"] > limit)
    return report


def _take_over(q: TaskQueue, item: int, worker: int) -> int | None:
    """Move a pending assignment of ``item`` to ``worker`` (re-priced for them); returns its round, or None."""
    import time

    rows = q.store._db.execute(
        "SELECT a.worker FROM assignments a LEFT JOIN answers b ON b.item = a.item AND b.worker = a.worker "
        "LEFT JOIN hq_leases l ON l.item = a.item AND l.worker = a.worker "
        "WHERE a.item = ? AND b.item IS NULL AND (l.expires_at IS NULL OR l.expires_at <= ?) ORDER BY a.rowid",
        (item, time.time())).fetchall()
    for (old,) in rows:
        round_no = q.move_task(item, old, worker)
        if round_no is not None:
            return round_no
    return None


# -- the `hitl labelstudio` command ---------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("labelstudio", help="export tasks to / import annotations from Label Studio")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = sub.add_parser("export", help="write the pending tasks with the model's predictions (Label Studio JSON)")
    e.add_argument("store", metavar="PROJECT.db")
    e.add_argument("out", metavar="TASKS.json")
    e.add_argument("--config", metavar="CONFIG.xml", help="also write the matching labeling config")
    e.add_argument("--all", action="store_true", help="every posted task, not only pending ones")
    i = sub.add_parser("import", help="record a Label Studio JSON export as answers")
    i.add_argument("store", metavar="PROJECT.db")
    i.add_argument("export", metavar="EXPORT.json")
    i.add_argument("--annotator", action="append", default=[], metavar="USER=HITER",
                   help="map a Label Studio user (id or e-mail) to a HITer id; repeat for each")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if not Path(args.store).is_file():
        raise StoreError("does not exist", item=args.store, field="store")
    if args.action == "export":
        tasks = export_tasks(args.store, args.out, pending_only=not args.all)
        if args.config:
            kinds = {("image" if "image" in t["data"] else "text") for t in tasks} or {"image"}
            if len(kinds) > 1:
                raise DataFormatError("mixes images and texts", field="tasks", expected="one kind per Label Studio project")
            Path(args.config).write_text(label_config(TaskQueue(args.store).classes(), kinds.pop()), encoding="utf-8")
        print(f"hitl labelstudio: wrote {len(tasks)} task(s) to {args.out}")
        return 0
    mapping = {}
    for pair in args.annotator:
        user, sep, hiter = pair.partition("=")
        if not sep or not user or not hiter:
            raise ValidationError(f"is {pair!r}", field="--annotator", expected="USER=HITER")
        mapping[user] = hiter
    report = import_annotations(args.store, args.export, mapping or None)
    print(f"hitl labelstudio: {report['recorded']} answer(s) recorded, {report['already']} already there, "
          f"{report['reassigned']} taken over, {len(report['skipped'])} skipped")
    if report["capped"]:
        print(f"  {report['capped']} answer(s) reported more time on task than one lease "
              f"({report['time_limit']:g} s): recorded at the limit")
    for s in report["skipped"]:
        print(f"  skipped task {s['task']} (item {s['item_id']}, {s['hiter']}): {s['reason']}")
    return 0
