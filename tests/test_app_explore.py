"""The Explore page (AppTest against a temporary SQLite database and the shipped VAE):
pick or upload two melodies, move along the latent path, hear a point, send it to the
rating queue."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app import app_database

import db
from rlmusic.models import vae_explore as explore
from rlmusic.models.vae import load_vae
from rlmusic.music.representation import tokens_to_midi

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
TIMEOUT = 60  # seconds per run: the first one loads the VAE and the soundfont


@pytest.fixture
def engine(tmp_path, monkeypatch):
    url = app_database(tmp_path, monkeypatch, open_mode=True)  # the open demo mode: every session a researcher
    yield db.get_engine(url)
    db.dispose_engine(url)


def explore_page() -> AppTest:
    return AppTest.from_file(str(ROOT / "app" / "views" / "explore.py"), default_timeout=TIMEOUT).run()


def midi_bytes(tokens) -> bytes:
    buf = io.BytesIO()
    tokens_to_midi(tokens).write(buf)
    return buf.getvalue()


def test_explore_walks_the_path_and_sends_a_point_to_the_queue(engine):
    at = explore_page()
    assert not at.exception
    assert at.title[0].value == "Explore melodies"
    vae, examples = load_vae(), explore.examples()
    path, _ = explore.interpolate(vae, examples[0]["tokens"], examples[1]["tokens"], 7)
    assert at.session_state["explore_path"][1] == path.tolist()  # ends: the two examples' reconstructions
    assert len(at.get("audio")) == 1 and len(at.get("image")) == 1
    first_audio = at.get("audio")[0].proto.url

    at.select_slider(key="position").set_value(3).run()
    assert not at.exception and "Point 4 of 7" in at.caption[0].value
    assert at.get("audio")[0].proto.url != first_audio  # another melody, another sound
    at.button(key="send_point").click().run()
    assert not at.exception and "as clip" in at.success[0].value
    clip_id = int(at.success[0].value.rsplit("clip ", 1)[1].rstrip("."))
    clip = db.get_clip(engine, clip_id)
    assert clip.tokens == path[3].tolist() and clip.model_name == "vae" and Path(clip.midi_path).is_file()
    assert db.queue_size(engine, "anyone") == 1


def test_explore_takes_an_uploaded_melody_and_names_what_is_wrong_with_a_bad_one(engine):
    at = explore_page()
    at.selectbox(key="pick_A").select("Upload a MIDI file...").run()
    assert "Upload a MIDI file for melody A" in at.info[0].value
    at.file_uploader(key="upload_A").upload("chords.mid", (DATA / "chords.mid").read_bytes()).run()
    assert "Cannot use chords.mid" in at.error[0].value and "polyphonic" in at.error[0].value
    at.file_uploader(key="upload_A").set_value(("long.mid", (DATA / "melody.mid").read_bytes(), "audio/midi")).run()
    assert "longer than the VAE's window of 32 steps" in at.error[0].value and "long.mid" in at.error[0].value

    mine = np.array(explore.examples()[5]["tokens"])
    at.file_uploader(key="upload_A").set_value(("mine.mid", midi_bytes(mine), "audio/midi")).run()
    assert not at.exception and not at.error
    (a, _), path, _ = at.session_state["explore_path"]
    assert list(a) == mine.tolist()
    assert path[0] == explore.interpolate(load_vae(), mine, explore.examples()[1]["tokens"], 7)[0][0].tolist()


def test_with_a_four_bar_vae_shipped_the_page_offers_both_lengths(engine, tmp_path, monkeypatch):
    import json

    from rlmusic.models import vae as vae_module
    from rlmusic.models.vae import MelodyVAE, VAEConfig, save_vae

    four = save_vae(MelodyVAE(VAEConfig(window=64, embed_dim=8, encoder_hidden=8, latent_dim=4, decoder_hidden=16,
                                        step_codes=2)), tmp_path / "vae-4bar")
    two = explore.examples()
    rows = [{"piece": f"p{i}", "title": f"tune {i}", "tokens": two[i]["tokens"] + two[i + 1]["tokens"]} for i in (0, 2)]
    (four / "examples.json").write_text(json.dumps(rows))
    real = vae_module.default_vae_dir
    monkeypatch.setattr(vae_module, "default_vae_dir", lambda model="2bar": four if model == "4bar" else real(model))
    at = explore_page()
    assert not at.exception and at.radio(key="vae_length").options == ["2 bars", "4 bars"]
    assert len(at.session_state["explore_path"][1][0]) == 32
    at.radio(key="vae_length").set_value("4 bars").run()
    assert not at.exception and "up to 4 bars" in at.markdown[0].value
    assert len(at.session_state["explore_path"][1][0]) == 64  # the 4-bar VAE's path between 4-bar melodies
