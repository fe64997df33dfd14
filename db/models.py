"""The tables, as SQLAlchemy 2.0 typed declarative models.

The schema changes only through Alembic migrations (``alembic/versions``); a test runs
``alembic check`` so these classes and the migrations never drift apart. Callers outside
``db/`` never see these classes: they call the functions of ``db/`` and get plain values.

Reading order follows the rating loop: who rates (raters), what produced the clips
(models), the clips, the two kinds of human judgement (star ratings with their history,
pairwise comparisons), then the training side (fine-tuning jobs, the workers that run
them, rounds); the app's settings table is ``db.settings.AppSetting``.

Two counters are denormalised on ``clips`` (``n_ratings``, ``n_comparisons``): they are
what makes ``next_clip`` an index walk instead of an aggregate over every rating. They are
only ever changed with ``SET n = n + k`` inside the transaction that inserts the ratings or
comparisons (with the clip rows locked first: ``db/bulk.py``), so they stay exact under
concurrent writers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Constraint names are derived, never left to the backend, so migrations can name what
# they alter and SQLite (batch mode) and PostgreSQL end up with the same schema.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MODEL_KINDS = ("prior", "tuned", "harmony")
# What a clip holds (revision 0005): a melody, or a four-voice harmonisation whose
# ``voices`` are soprano, alto, tenor and bass (``tokens`` is then its soprano).
CLIP_KINDS = ("melody", "harmony")
WINNERS = ("a", "b", "tie")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
JOB_ORIGINS = ("queue", "cli", "sweep")  # who runs a job: a worker, a command, a sweep
# Tags a rater may attach to a star rating (the listening app shows these as chips).
RATING_TAGS = ("boring", "no structure", "surprising", "pleasant")
RATER_NAME_MAX = 64
STUDY_NAME_MAX = 64


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (every timestamp column holds UTC)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite has no timezone type and returns naive datetimes; PostgreSQL returns aware
    ones. This makes both return aware UTC so callers can compare and subtract freely.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[int]: JSON}


class Rater(Base):
    """A person who rates: invited (``rlmusic raters invite``), or created from a name in a
    CSV import or the app's open demo mode.

    An invite is a random token given once as a link; only its SHA-256 is stored
    (``invite_sha256``, revision 0006), so the database never holds a token that works. A
    new invite replaces the old one; ``revoked_at`` shuts the rater out of the app.
    """

    __tablename__ = "raters"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(RATER_NAME_MAX), unique=True)  # stripped, 1..64
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # -- invites and roles (revision 0006)
    # A researcher may open the Dashboard, Jobs and study pages; a rater only Rate and Compare.
    researcher: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    invite_sha256: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)  # of the token
    invited_at: Mapped[datetime | None] = mapped_column()  # when the current invite was made
    revoked_at: Mapped[datetime | None] = mapped_column()  # set: the app refuses this rater


class Model(Base):
    """A model directory (prior or tuned) whose samples enter the rating queue."""

    __tablename__ = "models"
    __table_args__ = (CheckConstraint("kind IN ('prior', 'tuned', 'harmony')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))  # display name (directory basename by default)
    kind: Mapped[str] = mapped_column(String(16))  # one of MODEL_KINDS
    directory: Mapped[str] = mapped_column(String(1024), unique=True)  # absolute path: the identity
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))  # tuned from
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # corpus, reward model, commit
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Clip(Base):
    """One generated melody waiting to be (or already) rated."""

    __tablename__ = "clips"
    __table_args__ = (
        CheckConstraint("steps > 0", name="steps_positive"),
        CheckConstraint("kind IN ('melody', 'harmony')", name="kind"),
        # next_clip(order="fewest"): walk clips by rating count, oldest first.
        Index("ix_clips_queue_fewest", "n_ratings", "id"),
        # next_clip(order="priority"): highest priority first, then fewest ratings.
        Index("ix_clips_queue_priority", text("priority DESC"), "n_ratings", "id"),
        # next_pair (revision 0002): the first clip, fewest comparisons over all lengths;
        # its partner, per model, within one length.
        Index("ix_clips_queue_pair_first", "n_comparisons", "id"),
        Index("ix_clips_queue_pair_model", "model_id", "steps", "n_comparisons", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    tokens: Mapped[list[int]] = mapped_column(JSON)  # token ids, one per 16th-note step
    # one of CLIP_KINDS; the rating queues (next_clip, next_pair) serve one kind at a time
    kind: Mapped[str] = mapped_column(String(16), default="melody", server_default="melody")
    voices: Mapped[list[list[int]] | None] = mapped_column(JSON)  # harmony: S, A, T, B rows (its model's vocabulary)
    steps: Mapped[int] = mapped_column(Integer)  # len(tokens); pairs are made within one length
    midi_path: Mapped[str] = mapped_column(String(1024))
    audio_path: Mapped[str | None] = mapped_column(String(1024))  # OGG/WAV, set once rendered
    # SHA-256 (hex) of the files as stored (revision 0003): the app plays audio_path only
    # while its bytes still hash to audio_sha256, else it renders the tokens afresh.
    midi_sha256: Mapped[str | None] = mapped_column(String(64))
    audio_sha256: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int | None] = mapped_column(BigInteger)  # sampling seed, for reproduction
    # Active selection score (issue 7): higher is shown first by next_clip(order="priority").
    priority: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # Denormalised counters, kept exact by the writers (see the module docstring).
    n_ratings: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    n_comparisons: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A deliberately broken melody of a study's gold check (revision 0006): served only in
    # its check, never on its own by next_clip / next_pair.
    broken: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    model: Mapped[Model] = relationship(lazy="joined", innerjoin=True)


class Rating(Base):
    """A star rating: one per rater and clip; re-rating updates it and logs the old value."""

    __tablename__ = "ratings"
    __table_args__ = (
        # The unique index also serves next_clip's "not rated by this rater" probe.
        UniqueConstraint("rater_id", "clip_id"),
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"))
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id"), index=True)
    stars: Mapped[int] = mapped_column(Integer)  # 1..5
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # subset of RATING_TAGS
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RatingHistory(Base):
    """A value a rating held before it was changed (written on every real change)."""

    __tablename__ = "rating_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    rating_id: Mapped[int] = mapped_column(ForeignKey("ratings.id", ondelete="CASCADE"), index=True)
    stars: Mapped[int] = mapped_column(Integer)  # the old value
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # the old tags
    rated_at: Mapped[datetime] = mapped_column()  # when the old value was given
    replaced_at: Mapped[datetime] = mapped_column(default=utcnow)  # when it was overwritten


class Comparison(Base):
    """A pairwise judgement: which of two clips a rater preferred.

    ``clip_a_id``/``clip_b_id`` keep the order the rater saw (A left, B right) so position
    bias can be studied; ``pair_lo``/``pair_hi`` are the same two ids sorted, and carry
    the "one per rater and unordered pair" uniqueness.
    """

    __tablename__ = "comparisons"
    __table_args__ = (
        UniqueConstraint("rater_id", "pair_lo", "pair_hi"),
        CheckConstraint("clip_a_id <> clip_b_id", name="distinct_clips"),
        CheckConstraint(
            "(pair_lo = clip_a_id AND pair_hi = clip_b_id AND clip_a_id < clip_b_id)"
            " OR (pair_lo = clip_b_id AND pair_hi = clip_a_id AND clip_b_id < clip_a_id)",
            name="pair_sorted",
        ),
        CheckConstraint("winner IN ('a', 'b', 'tie')", name="winner"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"))
    clip_a_id: Mapped[int] = mapped_column(ForeignKey("clips.id"), index=True)
    clip_b_id: Mapped[int] = mapped_column(ForeignKey("clips.id"), index=True)
    pair_lo: Mapped[int] = mapped_column(Integer)  # min(clip_a_id, clip_b_id)
    pair_hi: Mapped[int] = mapped_column(Integer)  # max(clip_a_id, clip_b_id)
    winner: Mapped[str] = mapped_column(String(3))  # 'a', 'b' or 'tie' (relative to clip_a/clip_b)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Study(Base):
    """A blind A/B study: clips of two models judged in pairs, with gold checks.

    Raters meet its pairs on the Compare page; the model names never reach them.
    """

    __tablename__ = "studies"
    __table_args__ = (CheckConstraint("steps > 0", name="steps_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(STUDY_NAME_MAX), unique=True)
    model_a_id: Mapped[int] = mapped_column(ForeignKey("models.id"))  # "A" of the report
    model_b_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    steps: Mapped[int] = mapped_column(Integer)  # length of every clip (16th-note steps)
    seed: Mapped[int] = mapped_column(BigInteger)  # seeds the clips, the sides and the order
    folder: Mapped[str | None] = mapped_column(String(1024))  # where its clips and manifests are
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    for_rater_id: Mapped[int | None] = mapped_column(ForeignKey("raters.id"))  # served to this rater only; None: all


class StudyPair(Base):
    """One pair of a study. ``clip_a_id`` is model A's clip (in a gold check: the intact
    clip, the right answer) and ``clip_b_id`` model B's (in a gold check: the broken one).
    ``swap`` puts clip B on the left of the screen; ``position`` is the order pairs are
    served in. A judgement of the pair is any comparison of the same two clips
    (``pair_lo``/``pair_hi``, as on ``comparisons``), from the app or an import.
    """

    __tablename__ = "study_pairs"
    __table_args__ = (
        UniqueConstraint("study_id", "pair_lo", "pair_hi"),
        CheckConstraint("clip_a_id <> clip_b_id", name="distinct_clips"),
        Index("ix_study_pairs_pair", "pair_lo", "pair_hi"),
        Index("ix_study_pairs_order", "study_id", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # served in this order (a seeded shuffle)
    gold: Mapped[bool] = mapped_column(Boolean, default=False)  # an attention check
    clip_a_id: Mapped[int] = mapped_column(ForeignKey("clips.id"))  # model A (gold: intact)
    clip_b_id: Mapped[int] = mapped_column(ForeignKey("clips.id"))  # model B (gold: broken)
    swap: Mapped[bool] = mapped_column(Boolean, default=False)  # True: clip B shown on the left
    pair_lo: Mapped[int] = mapped_column(Integer)  # min(clip_a_id, clip_b_id)
    pair_hi: Mapped[int] = mapped_column(Integer)  # max(clip_a_id, clip_b_id)


class StudyCompletion(Base):
    """A rater who judged every pair of a study, with the unique completion code the Compare
    page showed them (revision 0009; ``db.studies.completions_of``)."""

    __tablename__ = "study_completions"
    __table_args__ = (UniqueConstraint("study_id", "rater_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    completed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A job (tuning, a feedback round, generation, a sweep's trial) and how it went.

    ``origin`` says who runs it: ``queue`` jobs (``rlmusic jobs submit``) are claimed by a
    worker and go back to the queue when their worker's heartbeat is lost; ``cli`` jobs
    (``rlmusic tune``/``round`` run by hand) and ``sweep`` trials record themselves and are
    marked failed when lost. A worker holds a job while ``worker`` names it and
    ``heartbeat_at`` is recent; ``cancel_requested`` asks the holder to stop cleanly.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
        ),
        CheckConstraint("origin IN ('queue', 'cli', 'sweep')", name="origin"),
        # claim_job: the oldest queued job; requeue_lost: running jobs by heartbeat.
        Index("ix_jobs_queue", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # e.g. 'tune', 'round', 'generate', 'sweep'
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the full config the job ran with
    status: Mapped[str] = mapped_column(String(16), default="queued")  # one of JOB_STATUSES
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # last reported metrics
    error: Mapped[str | None] = mapped_column(Text)  # traceback or message when failed
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # -- the queue (revision 0003)
    origin: Mapped[str] = mapped_column(String(16), default="cli", server_default="cli")  # JOB_ORIGINS
    output_dir: Mapped[str | None] = mapped_column(String(1024))  # absolute folder it writes to
    progress: Mapped[float | None] = mapped_column(Float)  # 0..1, last reported
    worker: Mapped[str | None] = mapped_column(String(200))  # who holds it (host:pid:tag)
    heartbeat_at: Mapped[datetime | None] = mapped_column()  # the holder's last sign of life
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # claims so far
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    log_tail: Mapped[str | None] = mapped_column(Text)  # the last lines of its log
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)  # a sweep's trial


class Worker(Base):
    """A ``rlmusic worker`` process (revision 0007): it registers when it starts, sends a
    heartbeat every few seconds naming the job it runs (``job_id``; None while idle), and
    stamps ``stopped_at`` when it ends. Alive: not stopped, heartbeat recent."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # host:pid:tag, as jobs.worker
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    kinds: Mapped[list[str]] = mapped_column(JSON)  # job kinds it takes
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)  # its last sign of life
    stopped_at: Mapped[datetime | None] = mapped_column()  # set when it ended (not when killed)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))  # running now


class JobPoint(Base):
    """One point of a job's curves: the metrics it reported at ``step`` (env steps for a
    tuning job), appended as the job runs so a page can draw them while it trains."""

    __tablename__ = "job_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(BigInteger)  # progress unit of the job (env steps, clips)
    values: Mapped[dict[str, Any]] = mapped_column(JSON)  # metric name -> number
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Round(Base):
    """One turn of the loop: which judgements fitted which reward model, and what it tuned.

    Id lists are stored as sorted inclusive ranges ``[[lo, hi], ...]`` (ratings are mostly
    consecutive ids), which keeps a round of 100k ratings a few bytes long and lossless.
    """

    __tablename__ = "rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    reward_model_dir: Mapped[str] = mapped_column(String(1024))
    rating_id_ranges: Mapped[list[list[int]]] = mapped_column(JSON)
    comparison_id_ranges: Mapped[list[list[int]]] = mapped_column(JSON)
    n_ratings: Mapped[int] = mapped_column(Integer)
    n_comparisons: Mapped[int] = mapped_column(Integer)
    parent_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))  # model tuned from
    tuned_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))  # model it produced
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

