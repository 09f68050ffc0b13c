"""Evaluation: the frame-level protocol, reports and plots."""
