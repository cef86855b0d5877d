"""Calls sys.exit(0) at import: `gradlab check` used to exit 0 with no output."""

import sys

sys.exit(0)


class Act:  # never reached
    pass
