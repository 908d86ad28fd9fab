"""Registry sources: where the names in the registry come from (shell)."""
