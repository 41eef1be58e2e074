"""The physical site as a model: battery, PCS, racks, PV, genset and grid side, stepped on an injected clock.

Served over real sockets by `sim_devices/`, stepped in fast time by the backtest."""
