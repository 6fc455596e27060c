"""The benchmarks a maintainer reruns, each a module run from the repository root:

    python -m benchmarks.<name> --help

Shared helpers: :mod:`benchmarks.common` (data, grading, ASAP performance queries, the
evaluation loops), :mod:`benchmarks.audio_excerpts` (rendered audio of the performances)
and :mod:`benchmarks.melody_queries` (themes and played melodies). One-off studies, each
saying what it found, are in :mod:`benchmarks.studies`; the tools that make shipped model
files are in ``scripts/``. Figures: benchmarks/RESULTS.md.
"""
