"""Writes tests/data/*.mid from music21's bundled corpus (run once; files are committed).

melody.mid: the first tune of O'Neill's 1850 collection that lies on the 16th grid
(one line, music21's MIDI writer).
chords.mid: the first phrase of Bach chorale BWV 269 chordified into one track (polyphonic).
satb.mid: the same phrase as four tracks, one per voice (soprano first), at 100 bpm.
"""

import copy
from pathlib import Path

from music21 import corpus, stream, tempo

out = Path(__file__).resolve().parent.parent / "tests" / "data"
out.mkdir(parents=True, exist_ok=True)

opus = corpus.parse("oneills1850/0001-0050.abc")



def on_grid(score) -> bool:
    notes = list(score.flatten().stripTies().notes)
    ends = [n.offset + n.quarterLength for n in notes]
    if any(b.offset < e for b, e in zip(notes[1:], ends)):
        return False  # overlapping voltas or grace notes
    return len(notes) > 32 and all(n.quarterLength > 0 and float(n.offset * 4).is_integer() and float(n.quarterLength * 4).is_integer()
               and not n.isChord for n in notes)


number, score = next((i, s) for i, s in enumerate(opus.scores) if on_grid(s))
print("melody.mid: tune", score.metadata.number, score.metadata.title)
tune = score.flatten().stripTies()
line = stream.Part()
line.insert(0, tempo.MetronomeMark(number=120))
for n in tune.notes:
    line.insert(n.offset, copy.deepcopy(n))
line.write("midi", fp=str(out / "melody.mid"))

chorale = corpus.parse("bach/bwv269")
chords = chorale.chordify().measures(0, 4)
chords.insert(0, tempo.MetronomeMark(number=100))
chords.write("midi", fp=str(out / "chords.mid"))
voices = chorale.measures(0, 4)
voices.insert(0, tempo.MetronomeMark(number=100))
voices.write("midi", fp=str(out / "satb.mid"))
print("wrote", sorted(p.name for p in out.glob("*.mid")))
