#!/usr/bin/env python
"""Convert an official ViCLIP ``.pth`` into a vidgen ViCLIP folder (config.json + model.safetensors).

    python scripts/convert_viclip.py ViClip-InternVid-10M-FLT.pth checkpoints/viclip-l14 [--size l14] [--dtype fp16]

The ``.pth`` is read with ``torch.load(..., weights_only=True)`` (no code runs),
loaded strictly, and written with the same key names, so the folder loads with
``vidgen.models.viclip.load_viclip`` and gives the same features. Exit status 2
with one line on a bad checkpoint or an existing output (pass --overwrite).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run from a checkout without installing: make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="official ViCLIP .pth (or any file/folder load_viclip reads)")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--size", help="l14, b16, toy, tiny (default: read from the weights)")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32", help="stored precision (default fp32)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    args = parser.parse_args(argv)

    from vidgen.errors import VidgenError
    from vidgen.models.viclip import config_name
    from vidgen.models.viclip_io import load_viclip, save_viclip
    from vidgen.runtime import resolve_dtype

    try:
        model = load_viclip(args.checkpoint, size=args.size, dtype=resolve_dtype(args.dtype))
        save_viclip(model, args.out, overwrite=args.overwrite)
    except VidgenError as exc:
        print(f"convert_viclip: error: {exc}", file=sys.stderr)
        return 2
    name = config_name(model.config) or "custom size"
    print(f"wrote {args.out} (ViCLIP {name}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
