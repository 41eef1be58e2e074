"""ems: real-time energy management controller for GPU datacenter sites."""
