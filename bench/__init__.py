"""dfstream benchmarks: scripts that print figures measured in one run (ratios, not timed tests)."""
