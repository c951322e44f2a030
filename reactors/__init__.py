"""The engine's own decisions: each reactor follows the log and records what it decides as facts."""
