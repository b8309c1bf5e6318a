"""Token and registration stores (what staying logged in keeps between runs)."""
