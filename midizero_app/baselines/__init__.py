"""Published methods the benchmarks measure the app against (not used by the app)."""
