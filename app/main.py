"""The listening app: ``rlmusic app`` runs ``streamlit run app/main.py`` (see launch.py).

Four pages: raters *Rate* single clips and *Compare* pairs; researchers read the
*Dashboard*, queue and follow tuning *Jobs*, *Explore* the melody VAE's latent space, and in
the *Studio* harmonise a melody, rework it span by span and rate its versions. Each page
only draws and calls ``db/`` functions (Explore also the VAE's generation, the Studio the
harmony model through ``app/harmonies.py``).
"""

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="rlmusic listening", page_icon=":material/music_note:", layout="centered")
page = st.navigation(
    [
        st.Page(VIEWS / "rate.py", title="Rate", icon=":material/star:", default=True),
        st.Page(VIEWS / "compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page(VIEWS / "dashboard.py", title="Dashboard", icon=":material/monitoring:"),
        st.Page(VIEWS / "jobs.py", title="Jobs", icon=":material/model_training:"),
        st.Page(VIEWS / "explore.py", title="Explore", icon=":material/explore:"),
        st.Page(VIEWS / "studio.py", title="Studio", icon=":material/piano:"),
    ]
)
page.run()
