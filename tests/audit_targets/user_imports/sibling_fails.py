"""Its import fails in a sibling module it imports: the error names the sibling and its line."""
from sibling_helper import THING  # noqa: F401


class Op:
    pass
