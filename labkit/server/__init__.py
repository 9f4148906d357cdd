"""``labkit serve``: the lab server that alone holds an engine and runs everyone's labs (DESIGN §9)."""
