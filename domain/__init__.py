"""The after-sales domain: facts, the loop rules and the controls. No I/O here."""
