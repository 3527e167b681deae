"""Thin adapters around the engine: manifest loading, the local runner (and later the operator)."""
