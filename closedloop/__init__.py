"""closedloop: an event-sourced, closed-loop after-sales service engine (the installed namespace of every layer)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("closedloop")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
