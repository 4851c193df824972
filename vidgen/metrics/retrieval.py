"""Similarity-based metrics over normalised embeddings: CLIPSIM, retrieval probabilities, Recall@K, zero-shot labels.

All functions take L2-normalised embeddings, so ``video @ text.T`` is the raw
cosine similarity (the CLIPSIM value, VBench's ``overall_consistency``), and
``softmax(100 * cos)`` over candidates is CLIP's retrieval probability
(Radford et al. 2021; 100 is CLIP's and ViCLIP's logit scale at inference).
"""

from __future__ import annotations

from typing import Sequence

import torch

from vidgen.errors import InputError

LOGIT_SCALE = 100.0


def cosine_matrix(video_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """``[V, T]`` cosine similarities of normalised ``[V, D]`` and ``[T, D]`` embeddings."""
    if video_embeds.ndim != 2 or text_embeds.ndim != 2 or video_embeds.shape[1] != text_embeds.shape[1]:
        raise InputError(f"embeddings must be [V, D] and [T, D], got {tuple(video_embeds.shape)} and {tuple(text_embeds.shape)}")
    return video_embeds.float() @ text_embeds.float().T


def paired_cosine(video_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """``[N]`` cosine of each video with its own caption (CLIPSIM per video)."""
    if video_embeds.shape != text_embeds.shape:
        raise InputError(f"paired embeddings must have equal shapes, got {tuple(video_embeds.shape)} and {tuple(text_embeds.shape)}")
    return (video_embeds.float() * text_embeds.float()).sum(-1)


def retrieval_probs(cosines: torch.Tensor, dim: int = -1, scale: float = LOGIT_SCALE) -> torch.Tensor:
    """``softmax(scale * cos)`` along ``dim``: over texts per video (``dim=1``) or over videos per text (``dim=0``)."""
    return torch.softmax(scale * cosines.float(), dim=dim)


def ranked(scores: torch.Tensor, k: int) -> list[tuple[int, float]]:
    """The ``k`` best ``(index, score)`` of a 1-D score vector, best first (ties: lower index first)."""
    order = torch.argsort(scores, descending=True, stable=True)[: max(0, k)]
    return [(int(i), float(scores[i])) for i in order]


def recall_at_k(cosines: torch.Tensor, video_to_text: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict[str, dict[int, float]]:
    """Recall@K in both directions for videos whose true caption is known.

    Args:
        cosines: ``[V, T]`` similarities.
        video_to_text: for each video, the column of its true caption.
        ks: cut-offs.

    Returns:
        ``{"video_to_text": {k: recall}, "text_to_video": {k: recall}}``. A
        text retrieves correctly when any video it captions is in its top ``k``
        (several videos may share a caption).

    Raises:
        InputError: the ground truth does not fit the matrix.
    """
    n_videos, n_texts = cosines.shape
    truth = torch.as_tensor(list(video_to_text), dtype=torch.long)
    if truth.numel() != n_videos or (n_videos and (truth.min() < 0 or truth.max() >= n_texts)):
        raise InputError(f"ground truth must give one caption column in [0, {n_texts}) for each of {n_videos} videos")
    v_order = torch.argsort(cosines, dim=1, descending=True, stable=True)
    v_rank = (v_order == truth[:, None]).float().argmax(dim=1)
    captioned = sorted(set(truth.tolist()))
    t_order = torch.argsort(cosines.T, dim=1, descending=True, stable=True)
    t_rank = []
    for text in captioned:
        positives = (truth == text)
        t_rank.append(int(torch.nonzero(positives[t_order[text]])[0]))
    t_rank_t = torch.tensor(t_rank, dtype=torch.long)
    return {
        "video_to_text": {int(k): float((v_rank < k).float().mean()) if n_videos else 0.0 for k in ks},
        "text_to_video": {int(k): float((t_rank_t < k).float().mean()) if captioned else 0.0 for k in ks},
    }


def zero_shot_classify(video_embeds: torch.Tensor, label_embeds: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Per video, the ``k`` most probable labels with their ``softmax(100 cos)`` probabilities.

    Raises:
        InputError: the label count does not match the label embeddings.
    """
    if len(labels) != label_embeds.shape[0]:
        raise InputError(f"{len(labels)} labels but {label_embeds.shape[0]} label embeddings")
    probs = retrieval_probs(cosine_matrix(video_embeds, label_embeds), dim=1)
    return [[(labels[i], p) for i, p in ranked(row, min(k, len(labels)))] for row in probs]
