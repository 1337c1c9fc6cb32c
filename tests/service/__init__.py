"""Tests of `dfstream serve`: the API, its database, the store sink, media analysis."""
