"""The `closedloop` command line: an edge that translates commands and flags into application calls."""
