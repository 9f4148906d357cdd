"""A node's whole nftables ruleset as one atomic transaction, rendered from the model.

Owns the transaction's shape: ``add table X; delete table X;`` for each labkit table,
then their full definitions, so ``nft -f -`` replaces everything at once or nothing.
The tables' contents come from ``nft_svc`` (kube-proxy's job), ``nft_pol`` (the
NetworkPolicy agent's job, including the fence) and ``nft_guard`` (anti-spoofing per pod port). Pure: same model, same text.
"""
from __future__ import annotations

from labkit.dataplane import names, nft_guard, nft_pol, nft_svc
from labkit.model.cluster import Cluster

TABLES = (("ip", names.SVC_TABLE), ("inet", names.POL_TABLE), ("bridge", names.GUARD_TABLE))


def render(cluster: Cluster, node_index: int) -> str:
    """The complete ruleset for node ``node_index`` (1-based)."""
    preamble = []
    for family, table in TABLES:
        preamble += [f"add table {family} {table}", f"delete table {family} {table}"]
    parts = ["\n".join(preamble), nft_svc.render(cluster, node_index), nft_pol.render(cluster, node_index),
             nft_guard.render(cluster, node_index)]
    return "\n\n".join(parts) + "\n"


def delete_all() -> str:
    """A transaction that removes every labkit table (used when a lab closes)."""
    lines = []
    for family, table in TABLES:
        lines += [f"add table {family} {table}", f"delete table {family} {table}"]
    return "\n".join(lines) + "\n"
