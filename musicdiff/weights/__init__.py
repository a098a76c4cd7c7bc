"""Model weights that musicdiff loads but does not train: where each file comes from, its SHA-256, where
it is looked for, and how it is imported, verified and fetched."""
