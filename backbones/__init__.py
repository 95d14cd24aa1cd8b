"""Model families of vbench, one module per family; each registers its named configs on import."""
