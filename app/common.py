"""What every page shares: the engine, who is here (invites, roles), a clip's audio and
picture, and saving a judgement.

Pages only draw and call ``db/`` functions; this module keeps the few helpers they
share so each page reads top to bottom. Who the session is and the clips a page has
served live in ``st.session_state`` (server side, one per browser session): a submit
only ever stores a judgement of the clip this session was shown, under the name of the
rater the session's invite let in, and the clip stays on screen until its judgement is
committed.

Who may come in: a browser session is let in only through an invite link
(``?invite=TOKEN``, ``rlmusic raters invite``) whose token is the rater's current,
unrevoked one; it is remembered for the session and checked again on every run, so a
revoked rater is out at their next action. Raters see Rate and Compare and only their
own name; researchers also the Dashboard and Jobs. ``rlmusic app --open`` is the local
demo mode: free names as before, every page for everyone, and a banner on every page.

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
import os
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

import db
from rlmusic.audio.render import clip_audio, default_cache_dir, render_to_file
from rlmusic.audio.synth import AudioError
from rlmusic.harmony.study_clips import INSTRUMENTS as HARMONY_INSTRUMENTS
from rlmusic.harmony.study_clips import harmony_of_clip
from rlmusic.music.representation import DEFAULT_VOCAB, tokens_to_notes

TEMPO = 120.0  # clips are played at this tempo (quarter notes per minute)
INSTRUMENT = "piano"  # one instrument for every clip, so timbre does not sway ratings
FILL_QUEUE = "rlmusic generate -n 16 --enqueue"
RATER_KEY = "rater"  # session_state: the rater's name, set once per browser session
INVITE_KEY = "invite"  # session_state: the rater an invite let in (id, name, role, hash; the token, kept
# in this server's memory only to put it back in the address, which page links clear)
REFUSED_KEY = "invite_refused"  # session_state: an invite was given and refused
INVITE_PARAM = "invite"  # the query parameter of an invite link: http://HOST:PORT/?invite=TOKEN
OPEN_ENV = "RLMUSIC_APP_OPEN"  # "1": the open demo mode of `rlmusic app --open`
OPEN_BANNER = ("Open demo mode: anyone may rate here under any name, without an invite. Judgements "
               "given here are not from invited raters; do not run a study this way.")
FLASH_KEY = "flash"  # session_state: a message for the next run (after st.rerun)
WRITE_TIMEOUT_S = 5.0  # longest a submit waits for another writer before asking to retry
AUDIO_TIMEOUT_S = 1.0  # recording where freshly rendered audio is waits at most this long

log = logging.getLogger("rlmusic.app")
if not log.handlers:  # the server's log (stderr of `rlmusic app`): who came in, by name, never a token
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s rlmusic.app %(levelname)s %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False


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


# --------------------------------------------------------------------------- who is here


@dataclass(frozen=True)
class Viewer:
    """Who this browser session is: an invited rater (``researcher`` or not), or anyone
    in the open demo mode (``name`` None until they give one; every page is theirs)."""

    name: str | None
    researcher: bool


def open_mode() -> bool:
    """``rlmusic app --open``: free names, no invites (a local demo)."""
    return os.environ.get(OPEN_ENV) == "1"


def _forget_session() -> None:
    for key in list(st.session_state):
        del st.session_state[key]


def viewer(eng) -> Viewer | None:
    """Who this session is, drawing nothing; None when it is not let in.

    Invite mode: the session remembers the rater its invite let in, as long as that invite
    is still the rater's current, unrevoked one (asked on every run), and keeps the token
    in the address (Streamlit's page links drop it; a reload needs it); else the
    ``?invite=TOKEN`` of the address lets it in. Only the token's hash is compared."""
    if open_mode():
        return Viewer(st.session_state.get(RATER_KEY), True)
    let_in = st.session_state.get(INVITE_KEY)
    if let_in is not None:
        if db.invite_still_valid(eng, let_in["id"], let_in["invite_sha256"]):
            if st.query_params.get(INVITE_PARAM) != let_in["token"]:
                st.query_params[INVITE_PARAM] = let_in["token"]  # page links drop it; a reload needs it
            return Viewer(let_in["name"], let_in["researcher"])
        _forget_session()  # revoked or replaced meanwhile
        log.info("invite no longer valid: %r was let out (revoked or replaced)", let_in["name"])
        st.session_state[REFUSED_KEY] = True
    token = st.query_params.get(INVITE_PARAM)
    if token:
        found = db.rater_by_invite(eng, token)
        if found is not None:
            st.session_state[INVITE_KEY] = {**found, "token": token}
            st.session_state[RATER_KEY] = found["name"]
            st.session_state.pop(REFUSED_KEY, None)
            log.info("invite accepted: %s %r came in", "researcher" if found["researcher"] else "rater",
                     found["name"])
            return Viewer(found["name"], found["researcher"])
        if not st.session_state.get(REFUSED_KEY):
            log.info("invite refused: not a current invite (mistyped, replaced or revoked)")
        st.session_state[REFUSED_KEY] = True
    return None


def admit(eng) -> Viewer:
    """Let this session in or stop the page. The open demo mode says so at the top of
    every page; invite mode draws a friendly page (no widget) for a missing, wrong,
    replaced or revoked invite, and the rater's own name in the sidebar once let in."""
    who = viewer(eng)
    if open_mode():
        st.warning(OPEN_BANNER, icon=":material/lock_open:")
        return who
    if who is None:
        st.title("rlmusic listening")
        if st.session_state.get(REFUSED_KEY):
            st.error("This invite link is not valid: it may be mistyped, replaced by a newer link, or "
                     "revoked. Please ask the researcher who sent it for a new one.")
        else:
            st.info("This listening app is by invitation. Please open the link you were sent (it ends in "
                    "`?invite=...`); if you have none, ask the researcher running the study for one.")
        st.stop()
    with st.sidebar:
        st.markdown(f"Signed in as **{who.name}**" + (" (researcher)" if who.researcher else ""))
        st.caption(f"{db.rater_count(eng, who.name)} judgements so far")
        if st.button("Sign out", key="sign_out"):
            _forget_session()
            st.query_params.clear()
            st.rerun()
    return who


def require_researcher(eng, what: str = "this page") -> Viewer:
    """``admit``, then stop unless the session is a researcher's."""
    who = admit(eng)
    if not who.researcher:
        st.warning(f"Only researchers may open {what}.")
        st.stop()
    return who


def rater(eng, title: str) -> str:
    """The session's rater name, once the page's ``title`` is drawn: the invited rater's
    (``admit``), or in the open demo mode the name given once, drawing the sign-in form
    and stopping the page until given."""
    who = admit(eng)
    st.title(title)
    if not open_mode():
        return who.name
    name = st.session_state.get(RATER_KEY)
    if name:
        with st.sidebar:
            st.markdown(f"Rating as **{name}**")
            st.caption(f"{db.rater_count(eng, name)} judgements so far")
            if st.button("Change rater", key="change_rater"):
                _forget_session()
                st.rerun()
        return name

    st.subheader("Who is listening?")
    st.write("Give your name once; your ratings are stored under it.")
    invited = db.invited_names(eng)  # never offered here, nor taken: nobody passes as them
    existing = [r["name"] for r in db.list_raters(eng) if r["name"] not in invited]
    picked = None
    if existing:
        picked = st.selectbox("I have rated before", existing, index=None, key="pick_rater",
                              placeholder="pick your name")
    typed = st.text_input("or a new name", key="new_rater", max_chars=64)
    if st.button("Start", key="start_rating", type="primary"):
        chosen = (typed or "").strip() or picked
        if not chosen:
            st.error("Please give a name (or pick yours) before rating.")
        elif " ".join(chosen.split()) in invited:
            st.error("That name belongs to an invited rater: please choose another one.")
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
        if clip.kind == "harmony":  # all four voices, on the choir the Studio and studies use
            path = default_cache_dir() / f"{clip.id}-harmony.ogg"
            render_to_file(harmony_of_clip(clip.tokens, clip.voices, tempo=TEMPO).midi(HARMONY_INSTRUMENTS), path,
                           instrument=None)
        else:
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
    if clip.kind == "harmony":
        st.image(harmony_roll_png(tuple(map(tuple, clip.voices)), tuple(clip.tokens)), width="stretch")
    else:
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


ROLL_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")  # melody or soprano, alto, tenor, bass


def piano_roll_png(tokens: tuple[int, ...]) -> bytes:
    """A piano-roll picture (time in beats, pitch) of a melody, as PNG bytes."""
    return roll_png((tuple(tokens_to_notes(tokens, DEFAULT_VOCAB)),), len(tokens))


def harmony_roll_png(voices: tuple[tuple[int, ...], ...], tokens: tuple[int, ...]) -> bytes:
    """The piano roll of a harmony clip's four voices at its soprano's pitches."""
    h = harmony_of_clip(list(tokens), [list(v) for v in voices])
    return roll_png(tuple(map(tuple, h.voices())), h.steps)


@functools.lru_cache(maxsize=256)
def roll_png(voices: tuple[tuple, ...], steps: int) -> bytes:
    """A piano roll of one or more voices (tuples of grid notes; time in beats, one colour
    per voice), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    beats = max(steps, 1) / 4
    fig = Figure(figsize=(8, 2.2 if len(voices) == 1 else 2.6), dpi=100)
    ax = fig.add_subplot()
    for notes, colour in zip(voices, ROLL_COLOURS):
        for n in notes:
            ax.broken_barh([(n.start / 4, n.duration / 4)], (n.pitch - 0.4, 0.8), color=colour)
    ax.set_xlim(0, beats)
    pitches = [n.pitch for notes in voices for n in notes]
    if pitches:
        ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set_xticks(range(0, int(beats) + 1, 4))
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("beat")
    ax.set_ylabel("MIDI pitch")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
