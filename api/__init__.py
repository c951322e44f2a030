"""The HTTP API: translates HTTP into engine calls and domain errors into HTTP errors."""
