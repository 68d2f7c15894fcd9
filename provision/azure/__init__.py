"""The azure target: the only modules that import Azure SDKs (lazily, inside functions)."""
