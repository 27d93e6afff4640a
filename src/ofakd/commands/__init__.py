"""Subcommands of ``ofakd``: one module each, discovered by ``ofakd.cli``."""
