"""Torch-free rendering of latents to pixels."""
