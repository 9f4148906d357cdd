"""Backends behind one small interface: ``docker`` (real kernel rules) and ``sim`` (the oracle)."""
