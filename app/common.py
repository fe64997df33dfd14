"""What every page shares: the engine, the rater's identity, a clip's audio and picture,
and saving a judgement.

Pages only draw and call ``db/`` functions; this module keeps the few helpers they
share so each page reads top to bottom. The rater's name and the clips a page has
served live in ``st.session_state`` (server side, one per browser session): a submit
only ever stores a judgement of the clip this session was shown, under the name this
session gave, and the clip stays on screen until its judgement is committed.

What a rater hears is what the rating is stored against: a clip's audio file is played
only when it lies under ``RLMUSIC_HOME`` and its bytes still have the SHA-256 recorded
with the clip (``db.verified_bytes``); otherwise the clip's tokens are rendered afresh.
A write waits at most ``WRITE_TIMEOUT_S`` for other writers; then the page says so in
one line and the rater submits the same answer again. No traceback reaches the browser.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
from collections.abc import Callable

import streamlit as st

import db
from rlmusic.audio.render import clip_audio
from rlmusic.audio.synth import AudioError
from rlmusic.music.representation import DEFAULT_VOCAB, tokens_to_notes

TEMPO = 120.0  # clips are played at this tempo (quarter notes per minute)
INSTRUMENT = "piano"  # one instrument for every clip, so timbre does not sway ratings
FILL_QUEUE = "rlmusic generate -n 16 --enqueue"
RATER_KEY = "rater"  # session_state: the rater's name, set once per browser session
FLASH_KEY = "flash"  # session_state: a message for the next run (after st.rerun)
WRITE_TIMEOUT_S = 5.0  # longest a submit waits for another writer before asking to retry
AUDIO_TIMEOUT_S = 1.0  # recording where freshly rendered audio is waits at most this long

log = logging.getLogger("rlmusic.app")


@st.cache_resource(show_spinner=False)
def _engine(url: str):
    return db.get_engine(url)


def engine():
    """The engine of ``RLMUSIC_DATABASE_URL``; stops the page when the schema is behind."""
    eng = _engine(db.database_url())
    try:
        db.check_schema(eng)
    except db.SchemaOutOfDateError as exc:
        st.error(str(exc))
        st.stop()
    return eng


# --------------------------------------------------------------------------- rater


def rater(eng) -> str:
    """The session's rater name; draws the sign-in form and stops the page until given."""
    name = st.session_state.get(RATER_KEY)
    if name:
        with st.sidebar:
            st.markdown(f"Rating as **{name}**")
            st.caption(f"{db.rater_count(eng, name)} judgements so far")
            if st.button("Change rater", key="change_rater"):
                for key in list(st.session_state):
                    del st.session_state[key]
                st.rerun()
        return name

    st.subheader("Who is listening?")
    st.write("Give your name once; your ratings are stored under it.")
    existing = [r["name"] for r in db.list_raters(eng)]
    picked = None
    if existing:
        picked = st.selectbox("I have rated before", existing, index=None, key="pick_rater",
                              placeholder="pick your name")
    typed = st.text_input("or a new name", key="new_rater", max_chars=64)
    if st.button("Start", key="start_rating", type="primary"):
        chosen = (typed or "").strip() or picked
        if not chosen:
            st.error("Please give a name (or pick yours) before rating.")
        else:
            try:
                db.get_or_create_rater(eng, chosen)
            except ValueError as exc:
                st.error(f"That name cannot be used: {exc}")
            else:
                st.session_state[RATER_KEY] = chosen.strip()
                st.rerun()
    st.stop()


def flash(message: str) -> None:
    """Show ``message`` at the top of the next run (after ``st.rerun``)."""
    st.session_state[FLASH_KEY] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.success(message)


def empty_queue(what: str) -> None:
    st.info(
        f"{what} Fill the queue with new clips:\n\n```\n{FILL_QUEUE}\n```"
    )


# --------------------------------------------------------------------------- clip media


def with_audio(eng, clip: db.ClipInfo) -> tuple[db.ClipInfo, bytes]:
    """``clip`` with the audio a rater may hear, and its bytes: the stored file when it
    lies under ``RLMUSIC_HOME`` and still has its recorded SHA-256; else the tokens
    rendered afresh into the clip audio cache (recorded in the database when it is not
    busy). Stops the page when this server cannot render audio."""
    data = db.verified_bytes(clip.audio_path, clip.audio_sha256)
    if data is not None:
        return clip, data
    try:
        path = clip_audio(clip.id, clip.tokens, tempo=TEMPO, instrument=INSTRUMENT, refresh=True)
    except AudioError as exc:
        st.error(f"Cannot render audio on this server: {exc}")
        st.stop()
    data = path.read_bytes()
    sha256 = db.sha256_bytes(data)
    try:
        db.set_clip_audio(eng, clip.id, path, sha256, timeout_s=AUDIO_TIMEOUT_S)
    except db.DatabaseBusyError:
        pass  # served all the same; recorded on a later visit
    return dataclasses.replace(clip, audio_path=str(path), audio_sha256=sha256), data


def play(clip: db.ClipInfo, audio: bytes) -> None:
    """An audio player for ``audio`` (from ``with_audio``) and a piano roll of ``clip``."""
    st.audio(audio, format="audio/ogg")
    st.image(piano_roll_png(tuple(clip.tokens)), width="stretch")


def save(write: Callable[[], object], what: str) -> bool:
    """Run ``write`` (a judgement of the clip on screen); True once it is committed.

    A database busy with another writer for ``WRITE_TIMEOUT_S`` (the write raised
    ``DatabaseBusyError`` having written nothing), or one that cannot be reached, gives
    one line asking to submit again: the clip and the chosen answer stay on screen.
    Details go to the server log, never to the browser.
    """
    try:
        write()
    except db.DatabaseBusyError:
        st.warning(f"The database is busy, so your {what} is not saved yet. Your answer is still "
                   "selected: press the button again in a moment.")
        return False
    except Exception as exc:  # a database that cannot be reached: one line, no traceback
        if db.explain_error(exc) is None:
            raise
        log.warning("saving a %s failed: %s", what, db.explain_error(exc))
        st.warning(f"The ratings database cannot be reached right now, so your {what} is not saved "
                   "yet. Your answer is still selected: press the button again in a moment.")
        return False
    return True


@functools.lru_cache(maxsize=256)
def piano_roll_png(tokens: tuple[int, ...]) -> bytes:
    """A piano-roll picture (time in beats, pitch) of a melody, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    notes = tokens_to_notes(tokens, DEFAULT_VOCAB)
    beats = max(len(tokens), 1) / 4
    fig = Figure(figsize=(8, 2.2), dpi=100)
    ax = fig.add_subplot()
    for n in notes:
        ax.broken_barh([(n.start / 4, n.duration / 4)], (n.pitch - 0.4, 0.8), color="#4c72b0")
    ax.set_xlim(0, beats)
    if notes:
        lo, hi = min(n.pitch for n in notes), max(n.pitch for n in notes)
        ax.set_ylim(lo - 2, hi + 2)
    ax.set_xticks(range(0, int(beats) + 1, 4))
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("beat")
    ax.set_ylabel("MIDI pitch")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
