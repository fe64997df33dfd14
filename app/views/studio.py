"""Studio: harmonise a melody (a clip of the queue or an uploaded MIDI file), hear it on a
choir, regenerate a span of one voice, keep the versions side by side, and rate one
(stored as a harmony clip, so it can enter studies)."""

import streamlit as st

import db
from app import common, harmonies
from rlmusic.harmony.voice_leading import RATES, VOICES
from rlmusic.music.representation import MelodyError

VERSIONS = "studio_versions"  # session_state: the list of harmonies.Version made in this session
NEWEST = "studio_newest"  # session_state: index of a version just made (selected on the next run)
SOURCES = ("A clip of the queue", "A MIDI file")


def studio_user(eng) -> str:
    """Who may use the Studio, and as whom they rate (drawing the title): every session let
    in, invited raters and researchers (in the open demo mode, the name given once), each
    under their own name. The one place to narrow it (e.g. to researchers)."""
    return common.rater(eng, "Studio")


def version_label(v) -> str:
    return f"v{v.number}: {v.label}" + (" (rated)" if v.clip_id is not None else "")


def add_version(versions: list, label: str, harmony) -> None:
    """Append a version and show it on the right, the one before it on the left."""
    versions.append(harmonies.Version(len(versions) + 1, label, harmony))
    st.session_state[NEWEST] = len(versions) - 1
    common.flash(f"Version {len(versions)} ready: {label}.")


def select_newest() -> None:
    """After a new version: start from it, show it on the right, the one before on the left
    (set before the widgets are drawn, as Streamlit asks)."""
    newest = st.session_state.pop(NEWEST, None)
    if newest is not None:
        st.session_state["studio_base"] = st.session_state["studio_show_right"] = newest
        st.session_state["studio_show_left"] = max(newest - 1, 0)


eng = common.engine()
user = studio_user(eng)
common.show_flash()
versions = st.session_state.setdefault(VERSIONS, [])
select_newest()

# --------------------------------------------------------------------------- 1. a melody
st.subheader("1. A melody")
source = st.radio("Start from", SOURCES, key="studio_source", horizontal=True)
picked = upload = None
if source == SOURCES[0]:
    clips = db.list_clips(eng, "melody", 50)
    if clips:
        picked = st.selectbox("Clip", clips, key="studio_clip",
                              format_func=lambda c: f"Clip {c.id} · {c.model_name} · {c.steps} steps")
    else:
        common.empty_queue("No melody clips yet.")
else:
    upload = st.file_uploader("MIDI file with a melody (one track, one note at a time)", type=["mid", "midi"],
                              key="studio_upload")
seed = int(st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="studio_seed"))
if st.button("Harmonise", key="studio_harmonise", type="primary", disabled=picked is None and upload is None):
    try:
        if picked is not None:
            what = f"clip {picked.id}"
            h = harmonies.harmonise(harmonies.clip_notes(picked), seed)
        else:
            what = upload.name
            notes, tempo, bar_steps, track = harmonies.uploaded_notes(upload.getvalue(), upload.name)
            h = harmonies.harmonise(notes, seed, tempo, bar_steps, track)
    except (MelodyError, ValueError, FileNotFoundError) as exc:
        st.error(f"Cannot harmonise this melody: {exc}")
    else:
        add_version(versions, f"{what} harmonised, seed {seed}", h)
        st.rerun()

if not versions:
    st.stop()

labels = [version_label(v) for v in versions]  # selectboxes show these for version indices

# --------------------------------------------------------------------------- 2. revise
st.subheader("2. Regenerate a span")
base_i = st.selectbox("Version to start from", range(len(versions)), index=len(versions) - 1,
                      format_func=labels.__getitem__, key="studio_base")
base = versions[base_i]
cols = st.columns(2)
voice = cols[0].selectbox("Voice", VOICES, index=1, key="studio_voice", format_func=str.capitalize)
beats = -(-base.harmony.steps // 4)
span = cols[1].slider("Span (beats)", 0, beats, (0, min(4, beats)), key="studio_span")
if st.button("Regenerate span", key="studio_revise", disabled=span[0] >= span[1]):
    start, end = span[0] * 4, min(span[1] * 4, base.harmony.steps)
    h = harmonies.revise(base, voice, start, end, seed)
    label = f"v{base.number}, {voice} beats {span[0]}-{span[1]} regenerated, seed {seed}"
    add_version(versions, label, h)
    st.rerun()

# --------------------------------------------------------------------------- 3. listen, compare, rate
st.subheader("3. Listen, compare, rate")
for side, column, default in zip(("left", "right"), st.columns(2), (max(len(versions) - 2, 0), len(versions) - 1)):
    with column:
        i = st.selectbox("Version", range(len(versions)), index=default, format_func=labels.__getitem__,
                         key=f"studio_show_{side}")
        v = versions[i]
        st.audio(harmonies.audio(v.harmony), format="audio/ogg")
        st.image(harmonies.picture(v.harmony), width="stretch")
        report = v.harmony.report
        st.caption(" · ".join(f"{k.replace('_', ' ')} {int(report[k])}" for k in RATES))
        stars = st.feedback("stars", key=f"studio_stars_{side}_{v.number}")
        if st.button("Save rating", key=f"studio_rate_{side}"):
            if stars is None:
                st.warning("Pick 1 to 5 stars first.")
            else:
                clip_id = harmonies.save_rated(eng, user, v, stars + 1)
                versions[i] = harmonies.Version(v.number, v.label, v.harmony, clip_id)
                common.flash(f"Saved {stars + 1} stars for version {v.number} (harmony clip {clip_id}).")
                st.rerun()
