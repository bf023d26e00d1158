"""Sparta from Python. `sparta.predict`: a client for sparta-serve replicas."""
