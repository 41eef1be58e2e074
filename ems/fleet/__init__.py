"""The fleet: sites publish to NATS JetStream; `ems fleet` keeps them in PostgreSQL (docs/fleet.md)."""
