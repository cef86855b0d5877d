"""Subcommands that live in their own modules: each module defines `command` (a click command)
and `gradlab.cli` adds it to the `gradlab` group, so a new command touches no shared file."""
