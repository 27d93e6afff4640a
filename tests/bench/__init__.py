"""The benchmarks' smoke runs (bench/)."""
