"""Music: vocabulary, conversions, theory rules, structure and originality (numpy and pretty_midi only)."""
