"""The ratings database: what the rest of rlmusic calls to store and read judgements.

Callers never write ORM queries: they call these functions with an ``Engine`` from
``get_engine()`` and get plain values back. The schema changes only through Alembic
(``upgrade``; ``check_schema`` says when it is needed). This package imports nothing of
rlmusic, envs or app (DESIGN.md, layers).

Modules, one concept each:
  engine      URL, engine per URL (SQLite WAL + busy timeout), sessions, retry on contention,
              bounded lock waits (``timeout_s`` -> ``DatabaseBusyError``)
  models      the tables (SQLAlchemy 2.0 typed declarative)
  schema      Alembic: upgrade, downgrade (serialised by a lock), check_schema
  backup      backups: a copy of a SQLite file, pg_dump for PostgreSQL
  files       a clip's files: content hashes, and what the app may serve
  checks      the values judgements are made of (rater names, stars, tags, clip ids)
  queue       models, clips (melodies and harmonies), next_clip / next_pair, list_clips
  ratings     raters, star ratings (+ history), pairwise comparisons
  invites     invite tokens (only their hash stored), researchers, revocation
  settings    the app's settings other commands read: the public URL invite links use
  bulk        many judgements at once: set-based batches in a fixed lock order
  rows        judgements as plain rows for the reward model, a rating's history
  csvio       ratings CSV import / export
  jobs        jobs (tuning, rounds, generation, sweeps) and rounds of the loop
  job_queue   workers claim, hold (heartbeats), report and finish jobs; lost jobs, cancel
  workers     workers announce themselves: register, heartbeat (the job they run), stopped,
              the live ones
  dashboard   counts, per-model means with CIs, activity per day, inter-rater agreement
  studies     blind A/B studies: pairs, sides, gold checks, the next pair, the report,
              completion codes of raters who judged every pair
  study_stats a study's win rate, Wilson interval, sign test, Krippendorff's alpha
  dataset     every judgement with its clips' tokens, model, round and study (JSON lines)
"""

from db.backup import backup_database, pg_dump_hint
from db.bulk import ImportIncompleteError
from db.csvio import RatingsImportError, export_ratings, import_ratings, read_ratings_csv
from db.dashboard import rater_agreement, ratings_by_day, ratings_per_model, recent_jobs, stats
from db.dataset import export_full
from db.engine import (
    DatabaseBusyError,
    DatabaseError,
    database_url,
    dispose_engine,
    explain_error,
    get_engine,
    redacted,
    rlmusic_home,
    session_scope,
    sqlite_path,
)
from db.files import sha256_bytes, sha256_file, under_home, verified_bytes
from db.invites import (
    invite_rater,
    invite_raters,
    invite_still_valid,
    invited_names,
    rater_by_invite,
    revoke_rater,
)
from db.job_queue import (
    claim_job,
    finish_job,
    job_points,
    report,
    request_cancel,
    requeue_lost,
)
from db.jobs import (
    create_job,
    default_output_dir,
    get_job,
    list_jobs,
    list_rounds,
    record_round,
    set_round_tuned_model,
    update_job,
)
from db.models import CLIP_KINDS, JOB_ORIGINS, JOB_STATUSES, MODEL_KINDS, RATING_TAGS, WINNERS
from db.queue import (
    ClipInfo,
    clips_of_model,
    enqueue_clips,
    get_clip,
    list_clips,
    list_models,
    next_clip,
    next_pair,
    queue_size,
    register_model,
    set_clip_audio,
    set_clip_priority,
)
from db.ratings import (
    add_comparison,
    add_rating,
    get_or_create_rater,
    list_raters,
    rater_count,
)
from db.rows import pair_rows, rating_history, star_rows
from db.schema import (
    SchemaOutOfDateError,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from db.settings import check_public_url, public_url, set_public_url
from db.studies import (
    ServedPair,
    check_study_name,
    completions_of,
    create_study,
    get_study,
    gold_comparison_ids,
    gold_record,
    list_studies,
    next_study_pair,
    study_completions,
    study_pairs,
    study_report,
    study_rows,
)
from db.study_stats import MAX_GOLD_FAIL
from db.workers import (
    ALIVE_WITHIN_S,
    get_worker,
    live_workers,
    register_worker,
    worker_heartbeat,
    worker_stopped,
)

__all__ = [
    "ALIVE_WITHIN_S",
    "JOB_ORIGINS",
    "CLIP_KINDS",
    "JOB_STATUSES",
    "MAX_GOLD_FAIL",
    "MODEL_KINDS",
    "RATING_TAGS",
    "WINNERS",
    "ClipInfo",
    "DatabaseBusyError",
    "DatabaseError",
    "ImportIncompleteError",
    "RatingsImportError",
    "SchemaOutOfDateError",
    "ServedPair",
    "add_comparison",
    "add_rating",
    "backup_database",
    "check_schema",
    "check_study_name",
    "claim_job",
    "clips_of_model",
    "create_job",
    "completions_of",
    "create_study",
    "current_revision",
    "database_url",
    "default_output_dir",
    "dispose_engine",
    "downgrade",
    "enqueue_clips",
    "export_full",
    "export_ratings",
    "finish_job",
    "get_clip",
    "explain_error",
    "get_engine",
    "get_job",
    "get_or_create_rater",
    "get_study",
    "get_worker",
    "gold_comparison_ids",
    "gold_record",
    "head_revision",
    "import_ratings",
    "invite_rater",
    "invite_raters",
    "invite_still_valid",
    "check_public_url",
    "public_url",
    "set_public_url",
    "invited_names",
    "job_points",
    "list_clips",
    "list_jobs",
    "list_models",
    "list_raters",
    "list_rounds",
    "list_studies",
    "live_workers",
    "next_clip",
    "next_pair",
    "next_study_pair",
    "pair_rows",
    "pg_dump_hint",
    "queue_size",
    "rater_agreement",
    "rater_by_invite",
    "rater_count",
    "rating_history",
    "ratings_by_day",
    "ratings_per_model",
    "read_ratings_csv",
    "recent_jobs",
    "record_round",
    "redacted",
    "register_model",
    "register_worker",
    "report",
    "request_cancel",
    "requeue_lost",
    "revoke_rater",
    "rlmusic_home",
    "session_scope",
    "set_clip_audio",
    "set_clip_priority",
    "set_round_tuned_model",
    "sha256_bytes",
    "sha256_file",
    "sqlite_path",
    "star_rows",
    "stats",
    "study_pairs",
    "study_completions",
    "study_report",
    "study_rows",
    "under_home",
    "update_job",
    "upgrade",
    "verified_bytes",
    "worker_heartbeat",
    "worker_stopped",
]
