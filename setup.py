"""vidgen: text-to-video generation around InternVid and ViCLIP."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# torch is pinned by the install command rather than here: a range that admits
# newer releases makes pip pull multi-GB CUDA wheels where a CPU build is wanted.
INSTALL_REQUIRES = [
    "torch>=2.4",
    "diffusers>=0.32",
    "transformers>=4.45",
    "accelerate>=0.34",
    "imageio>=2.31",
    "imageio-ffmpeg>=0.5",
    "av>=12",
    "omegaconf>=2.3",
    "einops>=0.7",
    "safetensors>=0.4",
    "numpy>=1.24",
    "Pillow>=9",
    "tqdm>=4.60",
    # CLIP tokenisation as OpenAI CLIP / ViCLIP do it: ftfy repairs text (curly
    # quotes, mojibake, full-width letters) before BPE, and CLIP's pattern uses
    # \p{L}/\p{N}, which only `regex` has (transformers already depends on it).
    "ftfy>=6.1",
    "regex>=2022.1",
]

EXTRAS = {
    # data: InternVid rows in parquet, WebDataset shards, remote files
    "data": ["pyarrow>=14", "webdataset>=0.2.86", "fsspec>=2023.1", "matplotlib>=3.7"],
    # train: logging, LoRA, curve plots
    "train": ["tensorboard>=2.14", "peft>=0.10", "matplotlib>=3.7"],
    # gpu: memory-efficient attention kernels (CUDA only)
    "gpu": ["xformers>=0.0.25"],
    # bench: the peers we compare against
    "bench": ["opencv-python-headless>=4.8", "psutil>=5.9"],
}
# opencv: the tests check the demo preprocessing against cv2.resize bit for bit.
# import-linter: the import contracts in .importlinter (docs/architecture.md); pytest-codeblocks runs the
# code blocks of README.md and docs/ (tests/docs_plugin.py); torchmetrics and scipy are the second
# implementations the scores are checked against (CLIPScore, sqrtm).
EXTRAS["test"] = sorted(
    {"pytest>=7", "scikit-video>=1.1.11", "psutil>=5.9", "opencv-python-headless>=4.8", "import-linter>=2.0", "pytest-codeblocks>=0.17",
     "torchmetrics>=1.0", "scipy>=1.9"}
    | set(EXTRAS["data"]) | set(EXTRAS["train"])
)

# The shipped default model: the top-level checkpoints/ folder, installed as vidgen/checkpoints/
# (vidgen.assets.shipped_model_dir() finds the checkout's folder or the installed copy). Only what
# sampling and scoring read goes in, plus the model card; examples/ (GIFs, contact sheet) stays out.
# The part folders are listed as packages too (data-only, no __init__.py), else setuptools warns
# "Package would be ignored" for each. A new part folder must be added to MODEL_PARTS
# (tests/integration/test_install.py checks the wheel holds every model file).
MODEL_PACKAGE, MODEL_SOURCE = "vidgen.checkpoints", "checkpoints"
MODEL_PARTS = ("scheduler", "text_encoder", "tokenizer", "unet", "vae", "viclip")
MODEL_FILES = ["model_index.json", "sample_defaults.yaml", "vocabulary.json", "eval_summary.json", "README.md"] + [f"{part}/*" for part in MODEL_PARTS]

setup(
    name="vidgen",
    version="0.1.0",
    description="Text-to-video generation around InternVid and ViCLIP: data, training, sampling, scoring",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["vidgen", "vidgen.*"]) + [MODEL_PACKAGE] + [f"{MODEL_PACKAGE}.{p}" for p in MODEL_PARTS],
    package_dir={MODEL_PACKAGE: MODEL_SOURCE},
    package_data={"vidgen": ["models/assets/*", "models/assets/sd15/*.json", "models/assets/sd15/*/*.json"],
                  MODEL_PACKAGE: MODEL_FILES},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["vidgen=vidgen.cli.main:run"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
