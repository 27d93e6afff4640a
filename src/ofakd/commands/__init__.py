"""Subcommands of ``ofakd``: one module each (it defines ``NAME``), discovered by ``ofakd.cli``; and ``cli_args``,
the command-line options they share (recipe, overrides, dotted flags, timm's spellings, run references)."""
