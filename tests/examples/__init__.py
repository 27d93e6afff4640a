"""The examples (examples/)."""
