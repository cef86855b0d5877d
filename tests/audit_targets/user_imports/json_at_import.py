"""Its import fails inside the standard library (json), called from line 4: the error names this file and line 4."""
import json

SETTINGS = json.loads("{bad")
class Op:
    pass
