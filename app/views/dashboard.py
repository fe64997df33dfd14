"""Dashboard (researchers): ratings per model, activity, agreement, queue, jobs, rounds."""

import altair as alt
import pandas as pd
import streamlit as st

import db
from app import common

st.title("Dashboard")
eng = common.engine()

# --------------------------------------------------------------------------- counts
counts = db.stats(eng)
row = st.columns(5)
row[0].metric("Queue (unrated clips)", counts["clips_unrated"])
row[1].metric("Clips", counts["clips"])
row[2].metric("Ratings", counts["ratings"])
row[3].metric("Comparisons", counts["comparisons"])
row[4].metric("Raters", counts["raters"])
if counts["clips"] == 0:
    common.empty_queue("No clips yet.")

# --------------------------------------------------------------------------- per model
st.header("Stars per model")
per_model = pd.DataFrame(db.ratings_per_model(eng))
rated = per_model[per_model["n"] > 0] if not per_model.empty else per_model
if rated.empty:
    st.info("No star ratings yet.")
else:
    rated = rated.assign(ci_low=rated["ci_low"].fillna(rated["mean"]),
                         ci_high=rated["ci_high"].fillna(rated["mean"]))
    base = alt.Chart(rated).encode(
        y=alt.Y("model_name:N", title=None, sort=alt.EncodingSortField("mean", order="descending"))
    )
    stars_axis = alt.Scale(domain=[1, 5], clamp=True)
    errors = base.mark_rule(strokeWidth=3, opacity=0.6).encode(
        x=alt.X("ci_low:Q", title="mean stars with 95% CI", scale=stars_axis), x2="ci_high:Q"
    )
    means = base.mark_circle(size=120, opacity=1).encode(
        x=alt.X("mean:Q", scale=stars_axis),
        tooltip=["model_name", "kind", "n", alt.Tooltip("mean:Q", format=".2f"),
                 alt.Tooltip("ci_low:Q", format=".2f"), alt.Tooltip("ci_high:Q", format=".2f")],
    )
    labels = base.mark_text(align="left", dx=10, dy=-10).encode(
        x="mean:Q", text=alt.Text("n:Q", format="d")
    )
    chart = (errors + means + labels).properties(height=max(140, 60 * len(rated)))
    st.altair_chart(chart, width="stretch")
    st.caption("Dots: mean stars; bars: 95% confidence interval; numbers: ratings.")
    st.dataframe(
        per_model[["model_id", "model_name", "kind", "n", "mean", "ci_low", "ci_high"]],
        hide_index=True,
    )

# --------------------------------------------------------------------------- over time
st.header("Judgements over time")
by_day = db.ratings_by_day(eng)
if by_day:
    st.bar_chart(pd.DataFrame(by_day).set_index("day")[["ratings", "comparisons"]], stack=True)
else:
    st.info("Nothing rated yet.")

# --------------------------------------------------------------------------- agreement
st.header("Agreement between raters on shared clips")
agreement = pd.DataFrame(db.rater_agreement(eng))
if agreement.empty:
    st.info("No clip has been rated by two raters yet.")
else:
    agreement["pair"] = agreement["rater_a"] + " / " + agreement["rater_b"]
    st.bar_chart(agreement.set_index("pair")[["exact", "within_one"]], stack=False)
    st.dataframe(agreement.drop(columns="pair"), hide_index=True)

# --------------------------------------------------------------------------- jobs, rounds
st.header("Fine-tuning jobs")
jobs = db.list_jobs(eng)
if jobs:
    table = pd.DataFrame(jobs)
    st.bar_chart(table["status"].value_counts(), height=200, x_label="status", y_label="jobs")
    st.dataframe(
        table[["id", "kind", "status", "created_at", "started_at", "finished_at", "error"]],
        hide_index=True,
    )
else:
    st.info("No jobs yet (`rlmusic tune ...` records them).")

st.header("Rounds")
rounds = db.list_rounds(eng)
if rounds:
    st.dataframe(
        pd.DataFrame(rounds)[
            ["id", "created_at", "n_ratings", "n_comparisons", "reward_model_dir",
             "parent_model_id", "tuned_model_id", "notes"]
        ],
        hide_index=True,
    )
else:
    st.info("No rounds yet.")
