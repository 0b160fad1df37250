"""domtool: the pure core (language, desired-state model, validation). No I/O here."""
