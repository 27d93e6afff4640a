"""ofakd.tuning: ofakd tune."""
