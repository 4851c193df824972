"""Assemble a base model folder (vae/, text_encoder/, tokenizer/, scheduler/) from a trained VAE and ViCLIP.

    python scripts/make_base_folder.py --vae runs/toy/vae/vae --viclip runs/toy/viclip/viclip --out runs/toy/base
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from vidgen.errors import VidgenError
    from vidgen.models.assemble import write_base_folder

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, help="AutoencoderKL folder")
    p.add_argument("--viclip", required=True, help="ViCLIP checkpoint whose text tower becomes the text encoder")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--prediction-type", default="v_prediction", choices=("epsilon", "v_prediction"))
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        print(f"wrote {write_base_folder(args.vae, args.viclip, args.out, prediction_type=args.prediction_type, overwrite=args.overwrite)}")
    except VidgenError as exc:
        print(f"make_base_folder: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
