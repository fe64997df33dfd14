"""Melodies to audio: a General MIDI soundfont played by a software synthesiser.

Modules: ``synth`` (instruments, soundfont, FluidSynth or TinySoundFont, loaded once per
process) and ``render`` (tokens or MIDI to normalised samples, OGG/WAV files, the clip
audio cache). Knows nothing of the database, the app or training.
"""
