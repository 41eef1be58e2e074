"""The operator surface: HTTP API, live dashboard, Prometheus metrics and operator actions.

`controls` (overrides, maintenance, forced mode) is plain Python used by the control loop;
only `server` imports aiohttp, so the loop runs without the web stack loaded.
"""
