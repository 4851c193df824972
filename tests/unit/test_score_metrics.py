"""vidgen.metrics building blocks: the demo's resize bit for bit, VBench's frames, seeking decode, retrieval maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidgen.errors import InputError, VideoError
from vidgen.metrics.preprocess import (
    decode_frames,
    get_preprocess,
    resize_linear_cv2,
    resize_short_center_crop,
    segment_middle_indices,
)
from vidgen.metrics.retrieval import cosine_matrix, recall_at_k, retrieval_probs, zero_shot_classify


@pytest.mark.parametrize("shape", [(720, 1280), (272, 640), (48, 64), (31, 17), (224, 224), (97, 333)])
def test_linear_resize_equals_cv2_bit_for_bit(shape):
    cv2 = pytest.importorskip("cv2")
    frames = np.random.default_rng(sum(shape)).integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    ours = resize_linear_cv2(frames, (224, 224))
    for frame, got in zip(frames, ours):
        np.testing.assert_array_equal(got, cv2.resize(frame, (224, 224), interpolation=cv2.INTER_LINEAR))


@pytest.mark.slow
def test_demo_preprocess_equals_the_public_demo_on_a_real_video(bunny):
    """The demo: OpenCV reads every frame, takes frames[::n//8][:8], cv2.resize to 224, ImageNet mean/std in float64."""
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(bunny))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    chosen = frames[:: len(frames) // 8][:8]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    demo = np.stack([(cv2.resize(f[:, :, ::-1], (224, 224)) / 255.0 - mean) / std for f in chosen])
    demo = torch.from_numpy(demo.transpose(0, 3, 1, 2)).float()
    ours, indices = get_preprocess("demo").load(bunny)
    assert indices == list(range(0, len(frames), len(frames) // 8))[:8]
    assert torch.equal(ours, demo)


def test_vbench_frames_and_crop():
    # VBench's "middle" sampling of a 132-frame video (int(linspace) cuts, middle of each piece)
    assert segment_middle_indices(132, 8) == [7, 24, 40, 57, 73, 90, 106, 123]
    assert segment_middle_indices(3, 8) == [0, 1, 2, 2, 2, 2, 2, 2]  # short clips repeat the last frame
    with pytest.raises(VideoError):
        segment_middle_indices(0, 8)
    flat = torch.full((2, 90, 160, 3), 77, dtype=torch.uint8)
    out = resize_short_center_crop(flat, 64)
    assert out.shape == (2, 64, 64, 3) and out.eq(77).all()
    x = get_preprocess("vbench", num_frames=2, size=64).transform(flat.numpy())
    assert x.shape == (2, 3, 64, 64)
    torch.testing.assert_close(x[0, 0, 0, 0], torch.tensor((77 / 255 - 0.48145466) / 0.26862954))


def test_decoding_picks_the_asked_frames(counter_video):
    from tests.conftest import counter_value

    decoded = decode_frames(counter_video, get_preprocess("demo").frame_indices, get_preprocess("vbench").frame_indices)
    (demo_idx, demo_frames), (mid_idx, mid_frames) = decoded.picks
    assert (decoded.announced, decoded.decodable, decoded.note) == (30, 30, None)
    assert demo_idx == [0, 3, 6, 9, 12, 15, 18, 21]  # 30 frames: frames[::3][:8]
    assert [counter_value(f) for f in demo_frames] == demo_idx
    assert [counter_value(f) for f in mid_frames] == mid_idx


def test_a_truncated_video_is_sampled_among_the_frames_that_decode(tmp_path, caplog):
    """A cut-off MP4 announces 48 frames and decodes fewer: the frame rule runs on the frames that exist, and says so."""
    from tests.conftest import counter_value, truncated_copy
    from vidgen.io.writer import write_video

    frames = np.zeros((48, 48, 64, 3), np.uint8)
    for i in range(48):
        frames[i, :, :32] = (i * 8) % 256  # as tests.conftest.make_counter_video, with the header first (faststart)
    whole = write_video(tmp_path / "whole.mp4", frames, fps=8.0, crf=0)
    decodable, announced = truncated_copy(whole, tmp_path / "cut.mp4", range(16, 40))
    demo, middle = get_preprocess("demo"), get_preprocess("vbench")
    decoded = decode_frames(tmp_path / "cut.mp4", demo.frame_indices, middle.frame_indices)
    assert (decoded.announced, decoded.decodable, decoded.truncated) == (announced, decodable, True)
    assert f"truncated: {decodable} of {announced} frames decodable" in decoded.note
    for (indices, frames), pre in zip(decoded.picks, (demo, middle)):
        assert indices == pre.frame_indices(decodable)  # the rule's own spread over the frames that exist
        assert [counter_value(f) for f in frames] == [i % 32 for i in indices]
    assert any(decoded.note in r.getMessage() for r in caplog.records)
    truncated_copy(whole, tmp_path / "stub.mp4", range(1, 8))
    with pytest.raises(VideoError, match=rf"^truncated: \d of {announced} frames decodable; .* 8 are needed"):
        decode_frames(tmp_path / "stub.mp4", demo.frame_indices)


def test_too_short_for_demo(counter_video):
    with pytest.raises(VideoError, match="30 frames; 40 are needed"):
        get_preprocess("demo", num_frames=40).load(counter_video)
    with pytest.raises(InputError, match="unknown preprocessing"):
        get_preprocess("fancy")


def test_retrieval_maths():
    cos = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.7], [0.1, 0.75, 0.2]])
    probs = retrieval_probs(cos, dim=1)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    torch.testing.assert_close(probs[0], torch.softmax(100 * cos[0], 0))
    # videos 0,1,2 are captioned by texts 0,1,2
    recall = recall_at_k(cos, [0, 1, 2], ks=(1, 2))
    assert recall["video_to_text"] == pytest.approx({1: 2 / 3, 2: 1.0})  # video 2 ranks text 1 first
    assert recall["text_to_video"] == pytest.approx({1: 2 / 3, 2: 2 / 3})  # text 2 ranks its video last
    # two videos share one caption: a text hit counts if any of its videos is in the top k
    shared = recall_at_k(cos[:, :2], [0, 1, 1], ks=(1,))
    assert shared["text_to_video"][1] == 1.0
    labels = zero_shot_classify(torch.eye(3), torch.eye(3)[[2, 0, 1]], ["c", "a", "b"], k=2)
    assert [row[0][0] for row in labels] == ["a", "b", "c"] and labels[0][0][1] > 0.99
    with pytest.raises(InputError):
        recall_at_k(cos, [0, 5, 1])
    with pytest.raises(InputError):
        cosine_matrix(torch.zeros(2, 3), torch.zeros(2, 4))
