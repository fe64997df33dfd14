"""The full dataset: ``rlmusic ratings export --full F.jsonl``.

One JSON object a line, every judgement joined with what it was made on, so a study can
be analysed elsewhere without the database:

- a star rating: ``{"type": "rating", "id", "rater", "stars", "tags", "created_at",
  "updated_at", "clip": CLIP}``;
- a comparison: ``{"type": "comparison", "id", "rater", "winner", "created_at",
  "updated_at", "clip_a": CLIP, "clip_b": CLIP, "study", "gold", "verdict"}`` where
  ``clip_a`` is the clip shown on the left and ``winner`` is relative to it; ``study`` is
  the study whose pair this is (None otherwise), ``gold`` whether that pair is a gold
  check, ``verdict`` the winner relative to the study's model A (``a``: model A's clip, or
  the intact clip of a gold check; ``b``; ``tie``);
- ``CLIP``: ``{"clip_id", "tokens", "steps", "seed", "model_id", "model", "model_kind",
  "model_dir", "round", "study", "broken"}``: ``round`` is the feedback round that tuned
  the clip's model (None for a model no round made), ``study`` the study the clip was
  made for (None otherwise), ``broken`` whether it is the broken melody of a gold check.

Ratings come first, then comparisons, each in id order. The file is written to a
temporary name, flushed to disk and renamed: never half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from db.csvio import write_whole
from db.engine import session_scope
from db.models import Clip, Comparison, Model, Rater, Rating, Round, Study, StudyPair
from db.studies import study_rows

BATCH = 5_000  # judgements read per query


def _clips(session) -> dict[int, dict[str, Any]]:
    rounds = dict(session.execute(select(Round.tuned_model_id, Round.id).where(Round.tuned_model_id.is_not(None))
                                  .order_by(Round.id)).all())  # the latest round per tuned model
    models = {m.id: m for m in session.scalars(select(Model))}
    study_of: dict[int, str] = {}
    for study, a, b in session.execute(select(Study.name, StudyPair.clip_a_id, StudyPair.clip_b_id)
                                       .join(Study, Study.id == StudyPair.study_id).order_by(StudyPair.id)):
        study_of.setdefault(a, study)
        study_of.setdefault(b, study)
    out = {}
    for c in session.execute(select(Clip.id, Clip.tokens, Clip.steps, Clip.seed, Clip.model_id, Clip.broken)):
        m = models[c.model_id]
        out[c.id] = {"clip_id": c.id, "tokens": list(c.tokens), "steps": c.steps, "seed": c.seed,
                     "model_id": m.id, "model": m.name, "model_kind": m.kind, "model_dir": m.directory,
                     "round": rounds.get(m.id), "study": study_of.get(c.id), "broken": bool(c.broken)}
    return out


def _lines(engine: Engine, handle) -> dict[str, int]:
    counts = {"ratings": 0, "comparisons": 0}
    in_study = {row["comparison_id"]: row for row in study_rows(engine)}
    with session_scope(engine) as session:
        clips = _clips(session)
        names = dict(session.execute(select(Rater.id, Rater.name)).all())
        for table, kind in ((Rating, "ratings"), (Comparison, "comparisons")):
            last = 0
            while True:
                batch = list(session.scalars(select(table).where(table.id > last).order_by(table.id).limit(BATCH)))
                if not batch:
                    break
                for j in batch:
                    line = {"type": kind[:-1], "id": j.id, "rater": names[j.rater_id]}
                    if kind == "ratings":
                        line |= {"stars": j.stars, "tags": list(j.tags), "clip": clips[j.clip_id]}
                    else:
                        study = in_study.get(j.id)
                        line |= {"winner": j.winner, "clip_a": clips[j.clip_a_id], "clip_b": clips[j.clip_b_id],
                                 "study": study and study["study"], "gold": study and study["gold"],
                                 "verdict": study and study["verdict"]}
                    line |= {"created_at": j.created_at.isoformat(), "updated_at": j.updated_at.isoformat()}
                    handle.write((json.dumps(line) + "\n").encode("utf-8"))
                counts[kind] += len(batch)
                last = batch[-1].id
                session.expunge_all()
    return counts


def export_full(engine: Engine, path: str | Path) -> dict[str, int]:
    """Write every judgement with its clips' tokens, model, round and study to ``path``
    (JSON lines, module docstring); returns ``{"ratings", "comparisons"}`` written."""
    counts: dict[str, int] = {}
    write_whole(Path(path), lambda handle: counts.update(_lines(engine, handle)))
    return counts
