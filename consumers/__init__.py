"""Ways events come in other than HTTP."""
