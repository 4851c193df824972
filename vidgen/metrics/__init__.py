"""Scores: ViCLIP and CLIP CLIPSIM, retrieval, story continuity, reports."""
