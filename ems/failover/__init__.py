"""Grid-loss failover: detection, the armed fast path, island supervision."""
