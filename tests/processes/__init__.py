"""Tests that run other processes: torchrun launches, killed or signalled runs, workers racing, ofakd in a fresh process."""
