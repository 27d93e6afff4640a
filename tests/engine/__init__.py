"""ofakd.engine: the trainer, ofakd.fit, the setup builder, host syncs."""
