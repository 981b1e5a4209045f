"""Attack classes, one regression test each, per protocol (see docs/security.md for the map)."""
