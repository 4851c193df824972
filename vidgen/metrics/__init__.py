"""Scores: ViCLIP and CLIP CLIPSIM, retrieval, and the toy-world judge."""
