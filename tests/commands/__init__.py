"""ofakd.commands and ofakd.cli: the commands end to end, flags, the bad-input catalogue."""
