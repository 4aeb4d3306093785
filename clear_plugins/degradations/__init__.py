"""The 16 degradations of MMD-Bench (App. B, Table 7)."""
