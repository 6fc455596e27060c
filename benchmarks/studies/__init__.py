"""One-off studies: questions measured once and answered (each module's docstring gives the
figures and what was decided). Still runnable: ``python -m benchmarks.studies.<name>``.
"""
