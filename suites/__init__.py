"""Built-in suite definitions (TOML files beside this one)."""
