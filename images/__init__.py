"""Image catalogue: environment specs for lab and service images."""
