"""ofakd's tests, laid out as the package: ``tests/<package>/`` holds the tests of ``ofakd.<package>`` (tests/data for
ofakd.data, tests/distill for the methods, ...) and the tests of ofakd's top-level modules sit here (test_suggest for
ofakd.suggest, test_threads for ofakd.threads, ...). ``tests/processes`` holds the tests that run other processes:
torchrun launches, killed or signalled runs, workers racing, ``ofakd`` as a user runs it; ``tests/bench`` the
benchmarks' smoke runs and ``tests/examples`` the examples'. The helpers they share stay here: ``conftest`` (fixtures,
tiny settings), ``tiny_models``, ``golden_cases``, ``hub_files``, ``blobs``, ``launching``, ``sync_counting``,
``tuning_runs``."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository's root (bench/, docs/, examples/ and src/ beside tests/)."""
