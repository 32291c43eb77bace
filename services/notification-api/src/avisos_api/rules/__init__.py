"""Admin-managed rules: which events notify whom, and the safe condition language."""
