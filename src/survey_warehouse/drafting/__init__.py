"""Preparing a new wave: drafting its spec and codebook rows, and checking it before a run loads it."""
