"""Rate: hear the next clip of the queue, give 1-5 stars and optional tags."""

import streamlit as st

import db
from app import common

SERVED = "rate_clip"  # session_state: the ClipInfo this session is rating

eng = common.engine()
rater = common.rater(eng, "Rate a melody")
common.show_flash()

clip = st.session_state.get(SERVED)
if clip is None:
    clip = db.next_clip(eng, rater)
    if clip is None:
        if db.stats(eng)["clips"]:
            common.empty_queue(f"You have rated every clip in the queue, {rater}: thank you!")
        else:
            common.empty_queue("The rating queue is empty.")
        st.stop()
clip, audio = common.with_audio(eng, clip)  # the stored file if unchanged, else rendered
st.session_state[SERVED] = clip  # kept until its rating is committed

st.caption(f"Clip {clip.id} · {db.queue_size(eng, rater)} clips left for you")
common.play(clip, audio)

st.write("How much do you like it?")
stars = st.feedback("stars", key=f"stars_{clip.id}")  # 0..4, None until clicked
tags = st.pills(
    "Anything to add? (optional)", list(db.RATING_TAGS), selection_mode="multi",
    key=f"tags_{clip.id}",
)
if st.button("Submit rating", key="submit_rating", type="primary"):
    if stars is None:
        st.warning("Pick 1 to 5 stars first.")
    else:
        try:
            saved = common.save(lambda: db.add_rating(eng, rater, clip.id, stars + 1, tags or [],
                                                      timeout_s=common.WRITE_TIMEOUT_S), "rating")
        except ValueError as exc:  # e.g. the clip was removed meanwhile: it cannot be rated
            del st.session_state[SERVED]
            st.error(f"Could not save this rating: {exc}")
            st.button("Next clip", key="skip_clip")
            st.stop()
        if saved:
            del st.session_state[SERVED]
            common.flash(f"Saved {stars + 1} stars for clip {clip.id}. Here is the next one.")
            st.rerun()
