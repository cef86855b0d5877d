"""The three independent ways to a gradient. Engines import ops and network, never each other."""
