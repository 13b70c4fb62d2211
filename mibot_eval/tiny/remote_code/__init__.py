"""Hugging Face remote code of the tiny checkpoint (copied verbatim into the checkpoint folder)."""
