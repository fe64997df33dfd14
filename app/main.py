"""The listening app: ``rlmusic app`` runs ``streamlit run app/main.py`` (see launch.py).

Six pages: raters *Rate* single clips and *Compare* pairs (a blind A/B study's pairs
first) and in the *Studio* harmonise a melody, rework it span by span and rate its
versions; researchers also read the *Dashboard* (with the studies' results), queue and
follow tuning *Jobs* and *Explore* the melody VAE's latent space. Who sees which pages is decided here
from the session's invite (``app.common.viewer``); each page checks it again itself. A
session without a valid invite sees only the page saying how to get in. Each page only
draws and calls ``db/`` functions (Explore also the VAE's generation, the Studio the
harmony model through ``app/harmonies.py``).
"""

from pathlib import Path

import streamlit as st

from app import common

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="rlmusic listening", page_icon=":material/music_note:", layout="centered")
who = common.viewer(common.engine())
pages = [
    st.Page(VIEWS / "rate.py", title="Rate", icon=":material/star:", default=True),
    st.Page(VIEWS / "compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page(VIEWS / "studio.py", title="Studio", icon=":material/piano:"),
]
if who is not None and who.researcher:
    pages += [
        st.Page(VIEWS / "dashboard.py", title="Dashboard", icon=":material/monitoring:"),
        st.Page(VIEWS / "jobs.py", title="Jobs", icon=":material/model_training:"),
        st.Page(VIEWS / "explore.py", title="Explore", icon=":material/explore:"),
    ]
page = st.navigation(pages, position="sidebar" if who is not None else "hidden")
page.run()
