"""Read models: each answers one question, rebuilt from the log at any time."""
