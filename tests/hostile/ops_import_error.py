"""Imports a package that does not exist."""

import gradlab_hostile_no_such_package  # noqa: F401


class Act:
    pass
