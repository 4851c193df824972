"""Sharpen the default model's text encoder so captions that differ only in direction stay apart.

The toy ViCLIP's text tower (the default model's text encoder) is trained
contrastively against a video tower that barely sees the order of frames, so
"moves left" and "moves right" (and "up"/"down") end up with nearly the same
states (cosine 0.99), and a denoiser conditioned on them cannot tell which
way to move. This tunes the encoder for a few hundred steps on the training
captions: linear heads read each attribute the caption states (colour, shape,
motion, background, size, parsed with the toy world's caption parser) from the
end-of-text state and from the states after it, while an L2 term keeps every
token state near the original, so a denoiser trained on the old states still
fits. With ``--separate W`` a hinge term also pushes each caption's token
states at least ``--margin`` (relative to the mean token norm) away from the
same caption with its motion or shape swapped (``swap_attribute``): linear
heads are satisfied by a tiny difference, while a denoiser's cross-attention
learns an attribute about as well as the states tell it apart (colour, whose
states differ most, is always right; direction, whose states differed least,
was near chance). It writes a copy of the base folder with the tuned
``text_encoder/``.

    python scripts/tune_text_encoder.py --base runs/toy/base --rows runs/toy/rows_aes.jsonl --out runs/toy/base_text
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ATTRS = ("color", "shape", "motion", "background", "size")


def _labels(captions: list[str]):
    import torch

    from vidgen.toyworld.captions import parse_caption

    parsed = [parse_caption(c) for c in captions]
    vocab = {a: sorted({p[a] for p in parsed if p.get(a)}) for a in ATTRS}
    labels = torch.full((len(captions), len(ATTRS)), -1, dtype=torch.long)
    for i, p in enumerate(parsed):
        for j, a in enumerate(ATTRS):
            if p.get(a):
                labels[i, j] = vocab[a].index(p[a])
    return vocab, labels


def _features(encoder, ids, eos):
    """End-of-text state and the mean of the states from it onwards (the padding after it sees the whole caption)."""
    import torch

    states = encoder(ids)[0]
    pos = torch.arange(ids.shape[1])[None]
    after = (pos >= eos[:, None]).float()[..., None]
    tail = (states * after).sum(1) / after.sum(1)
    return states, states[torch.arange(len(ids)), eos], tail


PAIRS = {
    "left/right": ("a red circle moves left on a white background", "a red circle moves right on a white background"),
    "up/down": ("a red circle moves up on a white background", "a red circle moves down on a white background"),
    "left/still": ("a red circle moves left on a white background", "a red circle stays still on a white background"),
    "circle/square": ("a red circle moves left on a white background", "a red square moves left on a white background"),
    "red/blue": ("a red circle moves left on a white background", "a blue circle moves left on a white background"),
}


def _token_ids(tokenizer, texts: list[str]):
    """Token ids padded to the encoder's context, as the pipeline feeds them."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def separation(encoder, tokenizer) -> dict[str, float]:
    """Mean distance between the token states of captions differing in one attribute, over the mean token norm."""
    import torch

    out = {}
    for name, pair in PAIRS.items():
        ids = _token_ids(tokenizer, list(pair))
        with torch.no_grad():
            h = encoder(ids)[0]
        out[name] = round(float((h[0] - h[1]).norm(dim=-1).mean() / h.norm(dim=-1).mean()), 4)
    return out


def _counterparts(captions: list[str], rng) -> list[str]:
    """Each caption with its motion (or, one time in three, its shape) swapped for a random other one."""
    from vidgen.toyworld.captions import parse_caption, swap_attribute
    from vidgen.toyworld.world import Motion, Shape

    out = []
    for text in captions:
        parsed = parse_caption(text)
        attribute, kind = ("shape", Shape) if rng.random() < 1 / 3 else ("motion", Motion)
        others = [v.value for v in kind if v.value != parsed[attribute]]
        out.append(swap_attribute(text, attribute, others[int(rng.integers(len(others)))]))
    return out


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import AutoTokenizer, CLIPTextModel

    from vidgen.errors import VidgenError
    from vidgen.io.files import atomic_folder

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, type=Path, help="base folder (vae/, text_encoder/, tokenizer/, scheduler/)")
    p.add_argument("--rows", required=True, type=Path, help="training rows (.jsonl with Caption)")
    p.add_argument("--out", required=True, type=Path, help="the new base folder")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--keep", type=float, default=1.0, help="weight of the L2 term keeping token states near the original")
    p.add_argument("--separate", type=float, default=0.0,
                   help="weight of the hinge keeping captions that differ in motion or shape apart (0: off)")
    p.add_argument("--margin", type=float, default=0.8,
                   help="the distance (mean token-state distance over mean token norm) the hinge asks for")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        torch.manual_seed(args.seed)
        tokenizer = AutoTokenizer.from_pretrained(str(args.base / "tokenizer"))
        encoder = CLIPTextModel.from_pretrained(str(args.base / "text_encoder"), use_safetensors=True)
        frozen = CLIPTextModel.from_pretrained(str(args.base / "text_encoder"), use_safetensors=True).eval().requires_grad_(False)
        captions = sorted({json.loads(line)["Caption"] for line in args.rows.read_text().splitlines() if line.strip()})
        vocab, labels = _labels(captions)
        ids = _token_ids(tokenizer, captions)
        eos = (ids == tokenizer.eos_token_id).int().argmax(dim=1)
        n_held = max(len(captions) // 10, 1)
        order = torch.randperm(len(captions))
        held, train_idx = order[:n_held], order[n_held:]
        width = encoder.config.hidden_size
        heads = torch.nn.ModuleList(torch.nn.Linear(2 * width, len(vocab[a])) for a in ATTRS)
        opt = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=args.lr, weight_decay=0.01)
        before = separation(encoder, tokenizer)
        rng = np.random.default_rng(args.seed)

        def apart(batch, a):
            """Hinge on the relative distance of states ``a`` to those of the same captions with motion or shape swapped."""
            other = _counterparts([captions[i] for i in batch.tolist()], rng)
            b = encoder(_token_ids(tokenizer, other))[0]
            dist = (a - b).norm(dim=-1).mean(1) / a.detach().norm(dim=-1).mean(1)
            return F.relu(args.margin - dist).mean(), dist.mean()

        def losses(batch):
            states, end, tail = _features(encoder, ids[batch], eos[batch])
            feats = torch.cat([end, tail], dim=1)
            ce, correct, count = 0.0, 0, 0
            for j, head in enumerate(heads):
                y = labels[batch, j]
                known = y >= 0
                if known.any():
                    logits = head(feats[known])
                    ce = ce + F.cross_entropy(logits, y[known])
                    correct += int((logits.argmax(1) == y[known]).sum())
                    count += int(known.sum())
            with torch.no_grad():
                ref = frozen(ids[batch])[0]
            keep = F.mse_loss(states, ref) / ref.pow(2).mean()
            return ce, keep, correct / max(count, 1), states

        encoder.train()
        for step in range(1, args.steps + 1):
            batch = train_idx[torch.randint(0, len(train_idx), (args.batch_size,))]
            ce, keep, acc, states = losses(batch)
            loss = ce + args.keep * keep
            gap = torch.zeros(())
            if args.separate:
                hinge, gap = apart(batch, states)
                loss = loss + args.separate * hinge
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 50 == 0 or step == args.steps:
                print(f"step {step}: attribute loss {float(torch.as_tensor(ce).detach()):.3f}, keep {keep.item():.4f}, "
                      f"swap distance {gap.item():.3f}, batch accuracy {acc:.3f}", flush=True)
        encoder.eval()
        with torch.no_grad():
            _, keep, held_acc, _ = losses(held)
        after = separation(encoder, tokenizer)
        report = {"steps": args.steps, "separate": args.separate, "margin": args.margin, "keep": args.keep,
                  "held_out_attribute_accuracy": held_acc, "relative_state_change": float(keep),
                  "separation_before": before, "separation_after": after, "captions": len(captions)}
        print(json.dumps(report, indent=1))
        with atomic_folder(args.out, overwrite=args.overwrite,
                           replaceable=lambda d: (d / "vae" / "config.json").is_file()) as tmp:
            for part in ("vae", "tokenizer", "scheduler"):
                shutil.copytree(args.base / part, tmp / part)
            encoder.save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
            (tmp / "text_encoder_report.json").write_text(json.dumps(report, indent=1))
    except (VidgenError, OSError) as exc:
        print(f"tune_text_encoder: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
