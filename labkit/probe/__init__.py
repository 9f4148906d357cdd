"""How reachability is measured and reported: matrices, observed versus expected."""
