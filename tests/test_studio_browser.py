"""The Studio page in a real browser (Debian's Chromium, Playwright, `rlmusic app` as a
subprocess): a MIDI file uploaded and harmonised, heard, a span regenerated, a version
rated and stored as a harmony clip."""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest
from test_app_browser import (  # noqa: F401
    ACTION_MS,
    CHROMIUM_ARGS,
    artifacts,
    audio_durations,
    browser,
    server,
    wait_idle,
)

import db
from rlmusic.audio.render import RELEASE_TAIL

pytestmark = pytest.mark.browser
DATA = Path(__file__).parent / "data"


def test_upload_harmonise_regenerate_and_rate(browser, server, artifacts, tmp_path):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(ACTION_MS)
    page.goto(f"{server.base}/studio?invite={server.invites['rhea']}")  # a researcher's link
    page.get_by_role("button", name="Harmonise").wait_for()
    wait_idle(page)

    page.get_by_text("A MIDI file").click()
    wait_idle(page)
    melody = pretty_midi.PrettyMIDI(str(DATA / "melody.mid"))  # its first two bars: a short upload
    melody.instruments[0].notes = [n for n in melody.instruments[0].notes if n.end <= 4.0]
    upload = tmp_path / "two_bars.mid"
    melody.write(str(upload))
    page.locator('input[type="file"]').set_input_files(str(upload))
    page.get_by_text("two_bars.mid").first.wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Harmonise").click()
    # the first harmonisation of a server loads torch and the model: give it longer
    page.get_by_text("Version 1 ready: two_bars.mid harmonised").wait_for(timeout=3 * ACTION_MS)
    wait_idle(page)
    durations = audio_durations(page, 2)
    seconds = max(n.end for n in melody.instruments[0].notes)  # the soprano ends last or with the others
    assert all(d == pytest.approx(seconds + RELEASE_TAIL, abs=0.3) for d in durations), durations

    page.get_by_role("button", name="Regenerate span").click()
    page.get_by_text("Version 2 ready: v1, alto beats 0-4 regenerated").wait_for()
    wait_idle(page)
    audio_durations(page, 2)
    shot = artifacts / "studio.png"
    page.screenshot(path=str(shot), full_page=True)

    right = page.locator('[data-testid="stColumn"]').filter(has=page.get_by_role("button", name="Save rating")).last
    right.get_by_role("radio", name="4 out of 5 stars").click()
    right.get_by_role("button", name="Save rating").click()
    page.get_by_text("Saved 4 stars for version 2").wait_for()
    wait_idle(page)
    [clip] = db.list_clips(server.engine, "harmony")
    assert len(clip.voices) == 4 and Path(clip.audio_path).is_file()
    assert [(r["rater"], r["stars"]) for r in db.star_rows(server.engine, kind="harmony")] == [("rhea", 4)]
    print(f"\nscreenshot: {shot}")
    context.close()
