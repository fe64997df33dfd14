"""Explore: pick or upload two melodies, move along the melody VAE's latent path between
them, hear each point and send one to the rating queue.

The VAE is one shipped in the package (``rlmusic vae``): 2 bars, or 4 bars when the
4-bar VAE is there (a choice at the top); its window bounds what can be uploaded. Who may open this page is decided by ``allowed`` alone.
"""

import hashlib
import tempfile
from pathlib import Path

import streamlit as st

import db
from app import common
from rlmusic.audio.render import clip_audio
from rlmusic.audio.synth import AudioError
from rlmusic.models import vae_explore as explore
from rlmusic.models.vae import SHIPPED_VAES, default_vae_dir, load_vae, vae_ref
from rlmusic.music.representation import MelodyError, tokens_to_midi

POINTS = 7  # points on the path, both ends included
UPLOAD = "Upload a MIDI file..."
PATH_KEY = "explore_path"  # session_state: ((tokens A, tokens B), path tokens (POINTS, T), alphas)


def allowed(eng) -> bool:
    """Whether this session may explore: researchers (invited with ``rlmusic raters invite
    NAME --researcher``; everyone in the open demo mode). Draws the invite page and stops
    for a session without a valid invite."""
    return common.admit(eng).researcher


@st.cache_resource(show_spinner="Loading the melody VAE...")
def vae_model(name: str = "2bar"):
    return load_vae(default_vae_dir(name))


def shipped() -> dict[str, str]:
    """The shipped VAEs found in the package, by label."""
    return {f"{name[0]} bars": name for name in SHIPPED_VAES if (default_vae_dir(name) / "config.json").is_file()}


def pick(side: str, examples: dict[str, list[int]], default: int, vocab, window: int) -> list[int]:
    """The tokens of melody ``side`` (A or B): a held-out example or an uploaded file.
    Stops the page with the reason when an upload cannot be read."""
    choice = st.selectbox(f"Melody {side}", [*examples, UPLOAD], index=default, key=f"pick_{side}")
    if choice != UPLOAD:
        return examples[choice]
    upload = st.file_uploader(f"MIDI file for {side} (one melody, at most {window // 16} bars)",
                              type=["mid", "midi"], key=f"upload_{side}")
    top = st.checkbox("Keep the top line of polyphonic input", key=f"top_{side}")
    if upload is None:
        st.info(f"Upload a MIDI file for melody {side}.")
        st.stop()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(upload.name).name
        path.write_bytes(upload.getvalue())
        try:
            tokens, _ = explore.read_melody(path, vocab, window, top_line=top)
        except (MelodyError, ValueError) as exc:
            st.error(f"Cannot use {upload.name}: {str(exc).replace(str(path), upload.name)}")
            st.stop()
    return tokens.tolist()


def send_to_queue(eng, vae, tokens: list[int], alpha: float) -> int:
    """Write the point's MIDI under RLMUSIC_HOME/explore and enqueue it -> the clip id."""
    digest = hashlib.sha256(bytes(tokens)).hexdigest()[:16]
    midi = db.rlmusic_home() / "explore" / f"{digest}.mid"
    midi.parent.mkdir(parents=True, exist_ok=True)
    tokens_to_midi(tokens, vae.vocab, tempo=common.TEMPO).write(str(midi))
    model_id = db.register_model(eng, name="vae", directory=vae.source_dir, kind="prior",
                                 provenance={"kind": "vae", "vae": vae_ref(vae.source_dir), "alpha": alpha})
    return db.enqueue_clips(eng, model_id, [{"tokens": tokens, "midi_path": str(midi)}])[0]


st.title("Explore melodies")
eng = common.engine()
if not allowed(eng):
    st.warning("Only researchers may open the Explore page.")
    st.stop()
common.show_flash()
choices = shipped()
length = st.radio("Melody length", list(choices), horizontal=True, key="vae_length") if len(choices) > 1 else None
vae = vae_model(choices[length] if length else "2bar")
window = vae.config.window
examples = {f"{e['title']} (held-out tune)": e["tokens"] for e in explore.examples(vae.source_dir)}
st.write(f"Two melodies of up to {window // 16} bars and the path between them in the latent "
         "space of a variational autoencoder. The ends are the VAE's reconstructions.")

col_a, col_b = st.columns(2)
with col_a:
    a = pick("A", examples, 0, vae.vocab, window)
with col_b:
    b = pick("B", examples, min(1, len(examples)), vae.vocab, window)

stored = st.session_state.get(PATH_KEY)
if stored is None or stored[0] != (tuple(a), tuple(b)) or len(stored[1][0]) != window:
    path, alphas = explore.interpolate(vae, a, b, POINTS)
    stored = ((tuple(a), tuple(b)), path.tolist(), alphas.tolist())
    st.session_state[PATH_KEY] = stored
_, path, alphas = stored

i = st.select_slider("Position from A to B", options=list(range(POINTS)), value=0, key="position",
                     format_func=lambda k: "A" if k == 0 else "B" if k == POINTS - 1 else f"{alphas[k]:.2f}")
tokens = path[i]
try:
    audio = clip_audio("explore", tokens, tempo=common.TEMPO, instrument=common.INSTRUMENT)
except AudioError as exc:
    st.error(f"Cannot render audio on this server: {exc}")
    st.stop()
st.audio(audio.read_bytes(), format="audio/ogg")
st.image(common.piano_roll_png(tuple(tokens)), width="stretch")
st.caption(f"Point {i + 1} of {POINTS} (alpha {alphas[i]:.2f})")

if st.button("Send this melody to the rating queue", key="send_point", type="primary"):
    clip_id = send_to_queue(eng, vae, tokens, float(alphas[i]))
    common.flash(f"Sent point {i + 1} (alpha {alphas[i]:.2f}) to the rating queue as clip {clip_id}.")
    st.rerun()
