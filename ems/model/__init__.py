"""The leaf of ems: readings, the frozen snapshot, reason codes, decisions and the error root.

Imports nothing else of ours. Drivers produce its readings, policies consume its
snapshot and return its `Decision`s; everything else builds on it.
"""
