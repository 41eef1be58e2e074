"""Active/standby controllers: a lease in a NATS JetStream key-value bucket (docs/ha.md)."""
