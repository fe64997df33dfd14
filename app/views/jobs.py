"""Jobs (researchers): queue a tuning job from a preset and a few fields, watch its
progress and curves, cancel it, read its evaluation, and queue its samples for rating.

The page only writes to and reads the jobs and workers tables (``db``); ``rlmusic worker``
runs what is queued here, on this machine or any other that shares the database and
folders (``make run`` starts one beside the app). The page says whether a worker is alive
(its heartbeat at most ``db.ALIVE_WITHIN_S`` old) and, when none is, that queued jobs wait.
"""

import importlib.util
from pathlib import Path

import pandas as pd
import streamlit as st

import db
from app import common

REFRESH_S = 5  # a running job's view redraws itself this often
CURVES = (  # (metric of the job's points, chart title)
    ("reward/total", "return per melody (what PPO maximises)"),
    ("eval/theory_reward_per_step", "theory reward per step (evaluation)"),
    ("kl/per_step", "KL to the prior, nats per 16th step"),
)
EVALUATION_KEYS = ("theory_reward_per_step", "kl_per_step", "kl_per_note", "structure", "diversity",
                   "novelty", "log_p_prior_per_step", "notes_not_in_key", "notes_excessively_repeated",
                   "leaps_resolved", "starts_with_tonic")


def may_manage_jobs() -> bool:
    """Who may use this page: researchers (invited with ``rlmusic raters invite NAME
    --researcher``; everyone in the open demo mode). Draws the invite page and stops for
    a session without a valid invite."""
    return common.admit(common.engine()).researcher


def preset_names() -> list[str]:
    """The tuning presets shipped with rlmusic: the ``presets/*.toml`` data files of its
    tuning package, found without importing training code."""
    spec = importlib.util.find_spec("rlmusic.tuning")
    folders = [Path(p) / "presets" for p in (spec.submodule_search_locations or [])] if spec else []
    return sorted({p.stem for folder in folders for p in folder.glob("*.toml")}) or ["default"]


def tune_argv(preset: str, timesteps: int, steps: int, seed: int, n_envs: int, config: str, prior: str,
              reward_model: str) -> list[str]:
    """``rlmusic tune`` options of the form's fields; a named file or folder must exist."""
    argv = ["--preset", preset, "--timesteps", str(timesteps), "--steps", str(steps), "--seed", str(seed),
            "--n-envs", str(n_envs)]
    for flag, value, is_file in (("--config", config, True), ("--prior", prior, False),
                                 ("--reward-model", reward_model, False)):
        if value.strip():
            path = Path(value.strip()).expanduser().resolve()
            if not (path.is_file() if is_file else path.is_dir()):
                raise ValueError(f"{flag.lstrip('-').replace('-', ' ')} {value.strip()!r} does not exist on this server")
            argv += [flag, str(path)]
    return argv


START_WORKER = "`rlmusic worker` (on any machine that shares this database and folders; `make run` starts one " \
    "beside the app)"


def worker_line(worker: dict) -> str:
    doing = f"running job {worker['job_id']}" if worker["job_id"] is not None else "idle"
    return f"Worker `{worker['name']}` alive, last seen {worker['seen_s_ago']:.0f} s ago, {doing}."


def workers_section() -> None:
    """Who runs the queue: the live workers, or a warning that queued jobs wait."""
    workers = db.live_workers(common.engine())
    if not workers:
        st.warning(f"No worker is running: queued jobs wait until one starts. Start one with {START_WORKER}.")
    for worker in workers:
        st.caption(worker_line(worker))


def pickup(eng, kind: str) -> str:
    """What happens next to a job of ``kind`` just queued: which worker picks it up, or
    that it waits for one."""
    workers = db.live_workers(eng, kind=kind)
    if not workers:
        return f"no worker is running, so it waits in the queue until one starts: {START_WORKER}."
    idle = [w for w in workers if w["job_id"] is None]
    worker = (idle or workers)[0]
    when = "" if idle else f" once its current job ({worker['job_id']}) ends"
    return f"worker `{worker['name']}` will pick it up{when} (after any job queued before it)."


def submit_form(eng) -> None:
    with st.form("submit_tune"):
        st.subheader("Queue a tuning job")
        preset = st.selectbox("Preset", preset_names(), key="job_preset")
        cols = st.columns(4)
        timesteps = cols[0].number_input("Env steps", min_value=64, value=100_000, step=1_000, key="job_timesteps")
        steps = cols[1].number_input("Melody length (16ths)", min_value=4, max_value=512, value=32, key="job_steps")
        seed = cols[2].number_input("Seed", min_value=0, value=0, key="job_seed")
        n_envs = cols[3].number_input("Melodies in parallel", min_value=1, value=16, key="job_n_envs")
        config = st.text_input("Config file (TOML, optional)", key="job_config")
        prior = st.text_input("Prior folder (optional: the shipped prior)", key="job_prior")
        reward_model = st.text_input("Reward model folder (optional)", key="job_reward_model")
        out = st.text_input("Output folder (optional: $RLMUSIC_HOME/jobs/job-ID)", key="job_out")
        if not st.form_submit_button("Queue tuning job", type="primary"):
            return
    try:
        argv = tune_argv(preset, int(timesteps), int(steps), int(seed), int(n_envs), config, prior, reward_model)
    except ValueError as exc:
        st.error(str(exc))
        return
    output = str(Path(out.strip()).expanduser().resolve()) if out.strip() else None
    job_id = db.create_job(eng, "tune", {"argv": argv, "submitted_from": "app"}, origin="queue", output_dir=output)
    common.flash(f"Queued tuning job {job_id}; {pickup(eng, 'tune')}")
    st.session_state["job_selected"] = job_id
    st.rerun()


def job_label(job: dict) -> str:
    return f"{job['id']} · {job['kind']} · {job['status']}"


def curves(eng, job: dict) -> None:
    points = pd.DataFrame(db.job_points(eng, job["id"]))
    shown = [(key, title) for key, title in CURVES if not points.empty and key in points]
    if not shown:
        st.info("No curves yet: a tuning job reports after each PPO update.")
        return
    points = points.set_index("step")
    for key, title in shown:
        st.caption(title)
        st.line_chart(points[[key]].dropna(), height=180, x_label="env steps", y_label=key)


def evaluation(job: dict) -> None:
    metrics = job["metrics"] or {}
    rows = [{"metric": k, "value": metrics[k]} for k in EVALUATION_KEYS if isinstance(metrics.get(k), (int, float))]
    st.subheader("Evaluation")
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(f"Model in `{job['output_dir']}`; the full table: `rlmusic evaluate --model {job['output_dir']}`")


def queue_samples(eng, job: dict) -> None:
    argv = job["config"].get("argv") or []
    steps = (job["config"].get("tune") or {}).get("steps") or next(
        (argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--steps"), 32)  # the melody length it tuned
    cols = st.columns([1, 2])
    n = cols[0].number_input("Clips", min_value=1, max_value=512, value=16, key="samples_n")
    if cols[1].button("Queue samples for rating", key="queue_samples"):
        out = str(Path(job["output_dir"]) / "samples")
        argv = ["--model", job["output_dir"], "-n", str(int(n)), "--steps", str(int(steps)), "--enqueue",
                "--out", out]
        gen = db.create_job(eng, "generate", {"argv": argv, "submitted_from": "app", "from_job": job["id"]},
                            origin="queue", output_dir=out)
        common.flash(f"Queued generation job {gen}: {int(n)} clips of job {job['id']}'s model go to the rating "
                     f"queue once a worker runs it; {pickup(eng, 'generate')}")
        st.rerun()


def job_view(eng, job: dict) -> None:
    job_id = job["id"]
    st.subheader(f"Job {job['id']}: {job['kind']}, {job['status']}"
                 + (" (cancel requested)" if job["cancel_requested"] and job["status"] == "running" else ""))
    st.progress(job["progress"] or 0.0, text=f"{100 * (job['progress'] or 0.0):.0f}% done")
    st.caption(f"output `{job['output_dir'] or '-'}` · worker `{job['worker'] or '-'}` · attempts {job['attempts']}")
    if job["error"]:
        st.error(job["error"])
    if job["status"] in ("queued", "running") and not job["cancel_requested"]:
        if st.button("Cancel job", key="cancel_job"):
            status = db.request_cancel(eng, job_id)
            common.flash(f"Job {job_id} cancelled." if status == "cancelled" else
                         f"Job {job_id} stops at its next rollout and keeps its checkpoint.")
            st.rerun()
    if job["kind"] == "tune":
        curves(eng, job)
    if job["kind"] == "tune" and job["status"] == "succeeded":
        evaluation(job)
        queue_samples(eng, job)
    if job["log_tail"]:
        with st.expander("Log (last lines)"):
            st.code("\n".join(job["log_tail"].splitlines()[-40:]), language=None)



def jobs_section() -> None:
    """The latest jobs and the selected one; redraws itself every ``REFRESH_S`` seconds
    while a job is queued or running."""
    eng = common.engine()
    jobs = db.list_jobs(eng, limit=50)
    st.header("Latest jobs")
    if not jobs:
        st.info("No jobs yet. Queue one above, or `rlmusic jobs submit tune ...`; `rlmusic worker` runs them.")
        return
    table = pd.DataFrame(jobs)
    table["progress"] = table["progress"].fillna(0.0) * 100
    st.dataframe(table[["id", "kind", "status", "progress", "origin", "created_at", "output_dir"]], hide_index=True,
                 column_config={"progress": st.column_config.ProgressColumn("progress", format="%.0f%%",
                                                                             min_value=0, max_value=100)})
    by_id = {j["id"]: j for j in jobs}
    if st.session_state.get("job_selected") not in by_id:
        st.session_state["job_selected"] = jobs[0]["id"]
    selected = st.selectbox("Job", list(by_id), key="job_selected", format_func=lambda i: job_label(by_id[i]))
    job_view(eng, by_id[selected])


eng = common.engine()
if not may_manage_jobs():
    st.warning("Only researchers may open the jobs page.")
    st.stop()
st.title("Jobs")
common.show_flash()
st.fragment(workers_section, run_every=REFRESH_S)()
submit_form(eng)
active = any(j["status"] in ("queued", "running") for j in db.list_jobs(eng, limit=50))
st.fragment(jobs_section, run_every=REFRESH_S if active else None)()
