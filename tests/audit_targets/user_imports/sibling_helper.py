def _build():
    raise ValueError("helper failed")


THING = _build()
