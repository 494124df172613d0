//! PostgreSQL: the store several replicas share (SPEC §8).
