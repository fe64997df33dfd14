"""Compare: hear clips A and B, say which you prefer (or a tie).

A blind A/B study's pairs come first (``db.next_study_pair``), each on the side the study
drew for it; then any two clips of the same length. Nothing on the page tells which model
made a clip, nor which pair is an attention check. A rater who has judged every pair of a
study sees their completion code for it at the top of the page, the same code whenever they
come back (``db.completions_of``; ``rlmusic study report`` lists who finished); once no study
pair is left for them the page is the completion page (the code, nothing to judge) until they
choose to compare more clips; a study's pairs are never served twice.
"""

import streamlit as st

import db
from app import common

SERVED = "compare_pair"  # session_state: the (ClipInfo, ClipInfo) this session is judging, left first
CHOICES = {"a": "A is better", "b": "B is better", "tie": "About the same"}

eng = common.engine()
rater = common.rater(eng, "Which do you prefer?")
common.show_flash()

MORE = "compare_more"  # session_state: after the completion page, the rater chose to compare more clips
completed = db.completions_of(eng, rater)  # a code is made once, the first time a study is all judged
for i, done in enumerate(completed, 1):
    st.success(f"Study {i} complete: you have judged all of its pairs, thank you. Your completion code is "
               f"**{done['code']}** (give it where you were asked to; it stays here when you come back).",
               icon=":material/task_alt:")

pair = st.session_state.get(SERVED)
if pair is None:
    study_pair = db.next_study_pair(eng, rater)
    if study_pair is None and completed and not st.session_state.get(MORE):  # the completion page
        st.caption("Your judgements are saved; you may close this page.")
        if st.button("Compare more clips", key="compare_more"):
            st.session_state[MORE] = True
            st.rerun()
        st.stop()
    pair = (study_pair.left, study_pair.right) if study_pair is not None else db.next_pair(eng, rater)
    if pair is None:
        common.empty_queue(
            "No pair left to compare (pairs need two clips of the same length you have "
            "not compared yet)."
        )
        st.stop()
served = [common.with_audio(eng, clip) for clip in pair]  # stored files if unchanged, else rendered
pair = tuple(clip for clip, _ in served)
st.session_state[SERVED] = pair  # kept until the comparison is committed

a, b = pair
for label, (clip, audio), column in zip("AB", served, st.columns(2)):
    with column:
        st.subheader(label)
        common.play(clip, audio)

cols = st.columns(len(CHOICES))
for (winner, text), column in zip(CHOICES.items(), cols):
    if column.button(text, key=f"prefer_{winner}", width="stretch"):
        try:
            saved = common.save(lambda w=winner: db.add_comparison(eng, rater, a.id, b.id, w,
                                                                   timeout_s=common.WRITE_TIMEOUT_S),
                                "comparison")
        except ValueError as exc:  # e.g. a clip was removed meanwhile: the pair cannot be judged
            del st.session_state[SERVED]
            st.error(f"Could not save this comparison: {exc}")
            st.button("Next pair", key="skip_pair")
            st.stop()
        if saved:
            del st.session_state[SERVED]
            common.flash(f"Saved: {text.lower()}. Here is the next pair.")
            st.rerun()
