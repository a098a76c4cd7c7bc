"""Model builders, one module per variant (diffusers classes configured from a params section)."""
