"""Dashboard (researchers): ratings per model, blind A/B studies (win rate, interval, agreement),
activity, agreement, queue, jobs, rounds."""

import altair as alt
import pandas as pd
import streamlit as st

import db
from app import common

eng = common.engine()
common.require_researcher(eng, "the Dashboard")
st.title("Dashboard")

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

# --------------------------------------------------------------------------- studies
st.header("Blind A/B studies")
reports = [db.study_report(eng, study["name"]) for study in db.list_studies(eng)]
if not reports:
    st.info("No studies yet (`rlmusic study create NAME --models A B --gold 4`).")
else:
    table = pd.DataFrame([
        {"study": r["study"], "A vs B": f"{r['model_a']} vs {r['model_b']}", "comparisons": r["n_comparisons"],
         "wins_a": r["wins_a"], "wins_b": r["wins_b"], "ties": r["ties"], "win_rate": r["win_rate"],
         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "ci_low_clustered": r["ci_low_clustered"],
         "ci_high_clustered": r["ci_high_clustered"], "p_value": r["p_value"], "raters": r["n_raters"],
         "alpha": r["krippendorff_alpha"], "raters_excluded": r["n_raters_excluded"]}
        for r in reports
    ])
    decided = table.dropna(subset=["win_rate"])
    if decided.empty:
        st.info("No study has a decided comparison yet (ties are left out of the win rate).")
    else:
        base = alt.Chart(decided).encode(y=alt.Y("study:N", title=None))
        share = alt.Scale(domain=[0, 1])
        clustered = base.mark_rule(strokeWidth=1, opacity=0.8).encode(
            x=alt.X("ci_low_clustered:Q", title="win rate of A (ties left out) with 95% intervals", scale=share),
            x2="ci_high_clustered:Q")
        bars = base.mark_rule(strokeWidth=5, opacity=0.5).encode(x=alt.X("ci_low:Q", scale=share), x2="ci_high:Q")
        dots = base.mark_circle(size=120, opacity=1).encode(
            x=alt.X("win_rate:Q", scale=share),
            tooltip=["study", "A vs B", "comparisons", "wins_a", "wins_b", "ties",
                     alt.Tooltip("win_rate:Q", format=".3f"), alt.Tooltip("p_value:Q", format=".3g")])
        even = alt.Chart(pd.DataFrame({"x": [0.5]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
        st.altair_chart((clustered + bars + dots + even).properties(height=max(120, 50 * len(decided))),
                        width="stretch")
        st.caption("Dots: share of decided comparisons won by model A; thick bars: 95% Wilson interval (every "
                   "judgement independent); thin lines: 95% bootstrap over pairs and raters (the one to trust "
                   "with few pairs); dashed: no preference.")
    agreed = table.dropna(subset=["alpha"])
    if agreed.empty:
        st.info("No agreement yet: Krippendorff's alpha needs two raters judging the same pairs.")
    else:
        base = alt.Chart(agreed).encode(y=alt.Y("study:N", title=None))
        bars = base.mark_bar().encode(
            x=alt.X("alpha:Q", title="Krippendorff's alpha on shared pairs (1: full agreement, 0: chance)",
                    scale=alt.Scale(domain=[-1, 1])))
        values = base.mark_text(align="left", dx=6).encode(x="alpha:Q", text=alt.Text("alpha:Q", format=".2f"))
        st.altair_chart((bars + values).properties(height=max(120, 50 * len(agreed))), width="stretch")
    st.dataframe(table, hide_index=True)
    st.caption("Full report: `rlmusic study report NAME`; raters failing more than "
               f"{db.MAX_GOLD_FAIL:.0%} of their gold checks are left out of every figure.")

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
