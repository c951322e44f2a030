"""The application: the composition root that wires log, views and reactors, the service the edges call, and replay."""
