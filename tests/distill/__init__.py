"""ofakd.distill: the losses, the methods, their golden values."""
