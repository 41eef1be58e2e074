"""The leaf of ems: readings, the frozen snapshot, reason codes, decisions and the error root
(and the one guard every long-running loop shares, cancel_guard).

Imports nothing else of ours. Drivers produce its readings, policies consume its
snapshot and return its `Decision`s; everything else builds on it.
"""
