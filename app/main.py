"""The listening app: ``rlmusic app`` runs ``streamlit run app/main.py`` (see launch.py).

Four pages: raters *Rate* single clips and *Compare* pairs; researchers read the
*Dashboard*; in the *Studio* a melody is harmonised, reworked span by span and its
versions rated. Each page only draws and calls ``db/`` functions (the Studio also the
harmony model, through ``app/harmonies.py``).
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
        st.Page(VIEWS / "studio.py", title="Studio", icon=":material/piano:"),
    ]
)
page.run()
