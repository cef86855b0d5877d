"""Loops forever at import."""

while True:
    pass


class Act:  # never reached
    pass
