"""Where worker processes run: this machine (local) or a cluster (distributed, later)."""
