"""Training data: feature-bag files and their validation."""
