"""Topology: the physical device graph and how a layout's mesh axes land on it."""
