"""`rlmusic raters` and `rlmusic study` end to end on tiny real models: an invite link whose
token the database never holds, a blind study with gold checks (clips generated, audio
rendered, enqueued, manifests), judgements imported as pairwise rows, a report equal to a
recount from `ratings export`, the full export, and `reward fit` leaving out gold
failures with the raters' agreement next to its accuracy."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_PRIOR

import db
from rlmusic.cli.main import main
from rlmusic.models.checkpoint import save_model
from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.music.gold import melody_scale
from rlmusic.music.representation import DEFAULT_VOCAB as V

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

N, GOLD, STEPS = 4, 2, 16


@pytest.fixture
def home(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'rlmusic.db'}"
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    db.upgrade(url)
    yield db.get_engine(url)
    db.dispose_engine(url)


@pytest.fixture(scope="module")
def tiny_b(tmp_path_factory):
    torch.manual_seed(1)
    return save_model(MelodyLSTM(ModelConfig(**TINY_PRIOR)), tmp_path_factory.mktemp("tiny_b") / "b")


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"rlmusic {command}: error: ") and err.count("\n") == 1, err
    return err


def test_raters_invite_prints_a_link_and_stores_only_a_hash(home, capsys):
    assert main(["raters", "invite", "ann", "--researcher", "--port", "8600"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    link = re.fullmatch(r"http://127\.0\.0\.1:8600/\?invite=([A-Za-z0-9_-]{32,})", out[-1])
    assert link, out
    token = link.group(1)
    assert db.rater_by_invite(home, token) == {**db.rater_by_invite(home, token), "name": "ann", "researcher": True}
    path = db.sqlite_path(db.database_url())
    assert all(token.encode() not in f.read_bytes() for f in path.parent.glob(path.name + "*"))
    assert main(["raters", "invite", "bob"]) == 0
    assert main(["raters", "revoke", "bob"]) == 0
    assert main(["raters", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"ann\s+researcher\s+active", listing) and re.search(r"bob\s+rater\s+revoked", listing)
    assert token not in listing
    assert main(["raters", "revoke", "nobody"]) == 1
    assert "no rater called 'nobody'" in one_line_error(capsys, "raters")
    assert main(["raters", "invite", "cy", "--port", "0"]) == 1
    assert "port must be 1..65535" in one_line_error(capsys, "raters")
    assert "cy" not in {r["name"] for r in db.list_raters(home)}  # refused before anything was stored


def test_invite_links_use_the_address_the_app_stored_or_the_one_given(home, capsys):
    def link() -> str:
        return capsys.readouterr().out.strip().splitlines()[-1]

    assert main(["raters", "invite", "dee"]) == 0
    assert link().startswith("http://127.0.0.1:8501/?invite=")  # nothing stored yet
    db.set_public_url(home, "https://ratings.example.org")  # as `rlmusic app --public-url` does
    assert main(["raters", "invite", "dee"]) == 0
    token = re.fullmatch(r"https://ratings\.example\.org/\?invite=([A-Za-z0-9_-]{32,})", link()).group(1)
    assert db.rater_by_invite(home, token)["name"] == "dee"
    assert main(["raters", "invite", "dee", "--public-url", "https://other.example.org:8443/"]) == 0
    assert link().startswith("https://other.example.org:8443/?invite=")
    assert main(["raters", "invite", "dee", "--port", "9000"]) == 0
    assert link().startswith("http://127.0.0.1:9000/?invite=")
    assert main(["raters", "invite", "dee", "--public-url", "https://x.org", "--port", "9000"]) == 1
    assert "not both" in one_line_error(capsys, "raters")
    assert main(["raters", "invite", "eve", "--public-url", "https://x.org/path"]) == 1
    assert "must not carry a path" in one_line_error(capsys, "raters")
    assert "eve" not in {r["name"] for r in db.list_raters(home)}  # refused before anything was stored


def test_a_batch_of_invites_goes_to_a_private_csv_all_or_none(home, tmp_path, capsys):
    db.set_public_url(home, "https://ratings.example.org")
    out = tmp_path / "wave1.csv"
    assert main(["raters", "invite", "--batch", "3", "--prefix", "wave1", "--csv", str(out)]) == 0
    assert "invited 3 raters, wave1-001 .. wave1-003" in capsys.readouterr().out
    assert out.stat().st_mode & 0o777 == 0o600  # the links are the raters' keys
    rows = list(csv.DictReader(out.open()))
    assert [r["name"] for r in rows] == ["wave1-001", "wave1-002", "wave1-003"]
    for r in rows:
        token = re.fullmatch(r"https://ratings\.example\.org/\?invite=([A-Za-z0-9_-]{32,})", r["link"]).group(1)
        assert db.rater_by_invite(home, token)["name"] == r["name"]
    assert len({r["link"] for r in rows}) == 3
    # a second batch numbers on: the first batch's links still work
    again = tmp_path / "wave1b.csv"
    assert main(["raters", "invite", "--batch", "2", "--prefix", "wave1", "--csv", str(again), "--researcher"]) == 0
    assert [r["name"] for r in csv.DictReader(again.open())] == ["wave1-004", "wave1-005"]
    assert db.rater_by_invite(home, re.search(r"invite=(\S+)", rows[0]["link"]).group(1)) is not None
    before = {r["name"] for r in db.list_raters(home)}
    for argv, message in [
        (["--batch", "2", "--prefix", "wave1", "--csv", str(out)], "exists: it may hold working links"),
        (["--batch", "2", "--prefix", "bad prefix", "--csv", str(tmp_path / "n.csv")], "--prefix 'bad prefix'"),
        (["--batch", "0", "--prefix", "w", "--csv", str(tmp_path / "n.csv")], "--batch must be 1..10,000"),
        (["--batch", "2", "--csv", str(tmp_path / "n.csv")], "needs --prefix P"),
        (["ann", "--batch", "2", "--prefix", "w", "--csv", str(tmp_path / "n.csv")], "not both"),
        (["--batch", "2", "--prefix", "w", "--csv", str(tmp_path / "no" / "n.csv")], "no folder"),
        (["zed", "--csv", str(tmp_path / "n.csv")], "go with --batch"),
    ]:
        assert main(["raters", "invite", *argv]) == 1, argv
        assert message in one_line_error(capsys, "raters"), argv
    assert {r["name"] for r in db.list_raters(home)} == before  # nothing stored
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".csv" or ".tmp" in p.name) == \
        ["wave1.csv", "wave1b.csv"]  # nor any file left behind


def judge(pairs: list[dict], rater: str, right_on_gold: bool, prefer_a: list[bool]) -> list[list]:
    """Pairwise CSV rows of ``rater`` for every pair, given in the pair's screen order."""
    rows = []
    for p, want_a in zip(pairs, prefer_a):
        left, right = (p["clip_b"], p["clip_a"]) if p["swap"] else (p["clip_a"], p["clip_b"])
        if p["gold"]:
            want_a = right_on_gold
        wanted = p["clip_a"] if want_a else p["clip_b"]
        rows.append([left, right, rater, "tie" if want_a is None else ("a" if wanted == left else "b")])
    return rows


def test_a_blind_study_from_creation_to_report(home, tiny_prior, tiny_b, tmp_path, capsys):
    argv = ["study", "create", "s1", "--models", str(tiny_prior), str(tiny_b), "--clips", str(N), "--steps",
            str(STEPS), "--gold", str(GOLD), "--seed", "3"]
    assert main(argv) == 0
    study = db.get_study(home, "s1")
    assert (study["n_pairs"], study["n_gold"], study["steps"]) == (N, GOLD, STEPS)
    folder = Path(study["folder"])
    assert folder == (tmp_path / "home" / "studies" / "s1").resolve()
    manifests = {side: [json.loads(x) for x in (folder / side / "manifest.jsonl").read_text().splitlines()]
                 for side in ("a", "b", "gold")}
    assert [len(manifests[s]) for s in ("a", "b", "gold")] == [N, N, GOLD]
    for side in ("a", "b", "gold"):
        for row in manifests[side]:
            clip = db.get_clip(home, row["clip_id"])
            assert clip.tokens == row["tokens"] and (folder / side / row["audio"]).is_file()
            assert clip.audio_sha256 == db.sha256_file(folder / side / row["audio"])  # hashes stored
    pairs = db.study_pairs(home, "s1")
    assert sorted(p["position"] for p in pairs) == list(range(N + GOLD))
    assert {p["swap"] for p in pairs} == {True, False}  # sides drawn per pair
    model_a = study["model_a"]
    for p in pairs:
        a, b = db.get_clip(home, p["clip_a"]), db.get_clip(home, p["clip_b"])
        assert a.steps == b.steps == STEPS
        if p["gold"]:  # the broken copy: same rhythm, every note off the intact melody's key
            scale = set(melody_scale(np.array(a.tokens), V))
            onsets = [t for t in b.tokens if V.is_pitch(t)]
            assert onsets and all(V.token_to_pitch(t) % 12 not in scale for t in onsets)
            assert [V.is_pitch(t) for t in a.tokens] == [V.is_pitch(t) for t in b.tokens] or \
                not any(V.is_pitch(t) for t in a.tokens)
        else:
            assert (a.model_name, b.model_name) == (model_a, study["model_b"])
    assert db.next_clip(home, "anyone").id not in {p["clip_b"] for p in pairs if p["gold"]}

    assert main(["study", "pairs", "s1", "--out", str(tmp_path / "pairs.csv")]) == 0
    listed = list(csv.DictReader(open(tmp_path / "pairs.csv")))
    assert [(int(r["clip_a"]), int(r["clip_b"])) for r in listed] == [
        (p["clip_a"], p["clip_b"]) for p in pairs if not p["gold"]]
    assert all(db.get_clip(home, int(r["clip_a"])).model_name == model_a for r in listed)

    # three raters through the CSV import: ann passes the gold checks, bob too, cy fails them
    prefs = {"ann": [True, True, False, None, True, True], "bob": [True, False, False, True, True, True],
             "cy": [False, False, True, True, True, True]}
    rows = [["clip_a", "clip_b", "rater", "winner"]]
    for rater, want in prefs.items():
        rows += judge(pairs, rater, right_on_gold=rater != "cy", prefer_a=want)
    with open(tmp_path / "judged.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    assert main(["ratings", "import", str(tmp_path / "judged.csv"), "--no-progress"]) == 0
    capsys.readouterr()

    assert main(["study", "report", "s1", "--json", str(tmp_path / "report.json")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("n_comparisons", "wins_a", "wins_b", "ties", "win_rate", "ci_low", "ci_high", "p_value",
                "n_raters", "krippendorff_alpha", "gold_failures"):
        assert key in report, key
    assert report["gold_failures"] == {"ann": 0, "bob": 0, "cy": GOLD}
    assert report["excluded_raters"] == ["cy"] and "raters excluded: 1" in printed

    # the same figures recounted from `ratings export` and `study pairs` alone
    assert main(["ratings", "export", str(tmp_path / "export.csv"), "--kind", "pairs"]) == 0
    model_a_clips = {int(r["clip_a"]) for r in listed}
    study_pairs = {frozenset((int(r["clip_a"]), int(r["clip_b"]))) for r in listed}
    gold_fail = {}
    recount = {"a": 0, "b": 0, "tie": 0}
    exported = list(csv.DictReader(open(tmp_path / "export.csv")))
    for r in exported:  # cy's gold failures, from the gold pairs' known answers
        a, b = int(r["clip_a"]), int(r["clip_b"])
        gold = next((p for p in pairs if p["gold"] and {a, b} == {p["clip_a"], p["clip_b"]}), None)
        if gold is not None:
            won = a if r["winner"] == "a" else b
            gold_fail[r["rater"]] = gold_fail.get(r["rater"], 0) + (r["winner"] == "tie" or won != gold["clip_a"])
    for r in exported:
        a, b = int(r["clip_a"]), int(r["clip_b"])
        if frozenset((a, b)) not in study_pairs or gold_fail.get(r["rater"], 0) / GOLD > 0.25:
            continue
        won = a if r["winner"] == "a" else b
        recount["tie" if r["winner"] == "tie" else ("a" if won in model_a_clips else "b")] += 1
    assert (recount["a"], recount["b"], recount["tie"]) == (report["wins_a"], report["wins_b"], report["ties"])
    assert report["n_comparisons"] == sum(recount.values()) == 2 * N
    assert report["win_rate"] == pytest.approx(recount["a"] / (recount["a"] + recount["b"]))
    assert report["n_raters"] == 2 and report["krippendorff_alpha"] is not None

    assert main(["ratings", "export", "--full", str(tmp_path / "full.jsonl")]) == 0
    full = [json.loads(x) for x in (tmp_path / "full.jsonl").read_text().splitlines()]
    assert len(full) == 3 * (N + GOLD) and all(x["study"] == "s1" for x in full)
    assert sum(1 for x in full if x["gold"]) == 3 * GOLD


def test_study_mistakes_are_one_line_and_write_nothing(home, tiny_prior, tmp_path, capsys):
    studies = tmp_path / "home" / "studies"
    cases = [
        (["--models", str(tiny_prior), str(tmp_path / "nope")], "is not a model directory"),
        (["--models", str(tiny_prior), "prior", "--gold", "9", "--clips", "2"], "--gold 9 must be 0..4"),
        (["--models", str(tiny_prior), "prior", "--clips", "0"], "need --clips >= 1"),
    ]
    for extra, says in cases:
        assert main(["study", "create", "bad", *extra]) == 1
        assert says in one_line_error(capsys, "study")
        assert not (studies / "bad").exists()
    assert main(["study", "create", "not/a/name", "--models", "prior", "prior"]) == 1
    assert "study name 'not/a/name' must be" in one_line_error(capsys, "study")
    assert main(["study", "report", "missing"]) == 1
    assert "no study called 'missing'; studies: none yet" in one_line_error(capsys, "study")
    assert main(["ratings", "export"]) == 1
    assert "give either a CSV file to write or --full F.jsonl" in one_line_error(capsys, "ratings")


def test_reward_fit_leaves_out_gold_failures_and_shows_the_raters_agreement(home, tiny_prior, tiny_b, tmp_path,
                                                                             capsys):
    assert main(["study", "create", "s2", "--models", str(tiny_prior), str(tiny_b), "--clips", "4", "--steps",
                 str(STEPS), "--gold", "2"]) == 0
    pairs = db.study_pairs(home, "s2")
    for rater, right in (("ann", True), ("bob", True), ("cy", False)):
        for p in pairs:
            winner = p["clip_a"] if (p["gold"] and right) or (not p["gold"] and rater != "bob") else p["clip_b"]
            db.add_comparison(home, rater, p["clip_a"], p["clip_b"], "a" if winner == p["clip_a"] else "b")
    capsys.readouterr()
    out = tmp_path / "rm"
    assert main(["reward", "fit", "--out", str(out), "--prior", str(tiny_prior), "--min-ratings", "4",
                 "--ensemble", "2", "--exclude-gold-failures", "--model", "auto"]) == 0
    printed = capsys.readouterr().out
    assert "left out 6 gold-check comparisons; 1 raters who failed more than 25% of their gold checks (cy)" in printed
    meta = json.loads((out / "config.json").read_text())
    assert meta["data"]["n_comparisons"] == 8 and meta["data"]["n_raters"] == 2  # ann and bob, no gold rows
    # ann and bob disagree on every one of the 4 study pairs: agreement 0 over 4 pairs of raters
    assert meta["rater_agreement"] == {"pairwise_agreement": 0.0, "n_shared_pairs": 4, "n_rater_pairs": 4}
    assert "raters' own agreement 0.000 over 4 pairs of raters" in printed
    assert "held-out pairwise accuracy" in printed
    kept = meta["metrics"]["auto"]["kept"]  # --model auto fitted both kinds and says which it kept
    assert meta["head"]["kind"] == kept and f"reward fit: model: {kept} (" in printed
    assert "kept by --model auto: held-out accuracy" in printed
    # each rater's own model: ann's judgements, shrunk toward a population model of every judgement
    assert main(["reward", "fit", "--out", str(tmp_path / "ann"), "--prior", str(tiny_prior), "--min-ratings", "4",
                 "--ensemble", "2", "--rater", "ann"]) == 0
    assert "reward fit: ann's own model from 0 star ratings + 4 comparisons of theirs" in capsys.readouterr().out
    personal = json.loads((tmp_path / "ann" / "config.json").read_text())["personal"]
    assert personal["rater"] == "ann" and personal["n_comparisons"] == 4
    assert main(["reward", "fit", "--out", str(tmp_path / "nobody"), "--rater", "nobody"]) == 1
    assert one_line_error(capsys, "reward").endswith("no judgements by rater 'nobody' in the database; raters "
                                                     "with judgements: ann, bob, cy\n")
    assert not (tmp_path / "nobody").exists()
    assert main(["reward", "fit", "--out", str(tmp_path / "x"), "--population", str(out)]) == 1
    assert "--population goes with --rater" in one_line_error(capsys, "reward")


def test_a_study_for_one_rater_is_served_to_them_alone(home, tiny_prior, tiny_b, tiny_tune_config, tmp_path,
                                                        capsys):
    """``study create --for RATER``: model A tuned on the rater's own reward model (checked),
    the pairs served to that rater and to nobody else."""
    assert main(["study", "create", "s1", "--models", str(tiny_prior), str(tiny_b), "--clips", "4", "--steps",
                 str(STEPS)]) == 0
    for p in db.study_pairs(home, "s1"):
        db.add_comparison(home, "ann", p["clip_a"], p["clip_b"], "a")
    rm, tuned = tmp_path / "rm-ann", tmp_path / "tuned-ann"
    assert main(["reward", "fit", "--out", str(rm), "--prior", str(tiny_prior), "--min-ratings", "4",
                 "--ensemble", "2", "--rater", "ann"]) == 0
    assert main(["tune", "--prior", str(tiny_prior), "--out", str(tuned), "--config", str(tiny_tune_config),
                 "--reward-model", str(rm), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["study", "create", "mine", "--for", "bob", "--models", str(tuned), str(tiny_prior)]) == 1
    assert "no judgements by rater 'bob'" in one_line_error(capsys, "study")
    db.add_comparison(home, "bob", db.study_pairs(home, "s1")[0]["clip_a"], db.study_pairs(home, "s1")[0]["clip_b"],
                      "b")
    assert main(["study", "create", "mine", "--for", "bob", "--models", str(tuned), str(tiny_prior)]) == 1
    assert f"rater 'bob' has no model of their own as A: {tuned.resolve()} was tuned on" in one_line_error(capsys,
                                                                                                       "study")
    assert main(["study", "create", "mine", "--for", "ann", "--models", str(tiny_prior), str(tuned)]) == 1
    assert "tuned on no reward model, not on ann's" in one_line_error(capsys, "study")
    assert not (db.rlmusic_home() / "studies" / "mine").exists()  # refused before anything is written
    assert main(["study", "create", "mine", "--for", "ann", "--models", str(tuned), str(tiny_prior), "--clips", "2",
                 "--steps", str(STEPS)]) == 0
    assert "ann alone judges them first" in capsys.readouterr().out
    assert db.get_study(home, "mine")["for_rater"] == "ann" and db.get_study(home, "s1")["for_rater"] is None
    mine = {p["pair_id"] for p in db.study_pairs(home, "mine")}
    served = db.next_study_pair(home, "ann")  # ann has judged every pair of s1: her own study is next
    assert served is not None and served.pair_id in mine
    for rater in ("bob", "cy"):  # bob has one s1 pair left; cy none judged
        got = db.next_study_pair(home, rater)
        assert got is not None and got.pair_id not in mine
    for p in db.study_pairs(home, "s1"):
        db.add_comparison(home, "bob", p["clip_a"], p["clip_b"], "a")
    assert db.next_study_pair(home, "bob") is None  # nothing left for bob: "mine" is ann's
