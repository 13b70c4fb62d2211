"""Recorded episode fixtures (runs/) and builders of synthetic runs with known answers."""
