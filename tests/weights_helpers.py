"""Tiny Stable Diffusion parts in the formats the community publishes, built with diffusers' own classes.

A Stable Diffusion folder (2-D U-Net), the same as an fp16-variant-only folder, a
``MotionAdapter`` folder, the adapter as an original AnimateDiff motion-module file,
LoRA files in diffusers' and kohya's layouts, and a single-file checkpoint in the
original (LDM) key layout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

BLOCKS = (32, 64)


def sd_pipeline(seed: int = 0):
    """A tiny random ``StableDiffusionPipeline`` with SD-1.5's block structure (2 levels, CLIP vocabulary)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from vidgen.models.tokenizer import hf_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=BLOCKS, layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=32, sample_size=16)
    vae = AutoencoderKL(block_out_channels=BLOCKS, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, layers_per_block=1,
                        norm_num_groups=32, sample_size=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                num_attention_heads=4, max_position_embeddings=77))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=hf_clip_tokenizer(77), unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def motion_adapter(seed: int = 1, channels=BLOCKS, max_len: int = 32):
    """A tiny ``MotionAdapter`` with random (non-zero) motion modules."""
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    adapter = MotionAdapter(block_out_channels=channels, motion_layers_per_block=1, motion_num_attention_heads=8,
                            motion_norm_num_groups=32, motion_max_seq_length=max_len)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.05)
    return adapter


def save_sd_folder(folder: Path, variant: str | None = None) -> Path:
    pipe = sd_pipeline()
    if variant == "fp16":
        pipe.to(torch.float16)
    pipe.save_pretrained(str(folder), safe_serialization=True, variant=variant)
    return folder


def save_adapter_folder(folder: Path, **kwargs) -> Path:
    motion_adapter(**kwargs).save_pretrained(str(folder), safe_serialization=True)
    return folder


def save_original_adapter(path: Path, adapter=None) -> Path:
    """The adapter as AnimateDiff's original file (``temporal_transformer``, ``attention_blocks``, position tables)."""
    from safetensors.torch import save_file

    from vidgen.models.weight_files import motion_modules_to_original

    adapter = adapter or motion_adapter()
    save_file({k: v.contiguous() for k, v in motion_modules_to_original(adapter.state_dict()).items()}, str(path))
    return path


def lora_state(seed: int = 3, targets=("to_q", "to_k", "to_v", "to_out.0"), unet=None):
    """A random peft LoRA state dict for the tiny SD U-Net (diffusers names, no ``unet.`` prefix)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = unet if unet is not None else sd_pipeline().unet
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=list(targets)))
    torch.manual_seed(seed)
    return {k: torch.randn_like(v) * 0.1 for k, v in get_peft_model_state_dict(unet).items()}


def save_diffusers_lora(folder: Path, state=None) -> Path:
    """``folder/pytorch_lora_weights.safetensors`` as diffusers' trainers write it."""
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=state or lora_state(), safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


def save_kohya_lora(path: Path, state=None) -> Path:
    """The same LoRA in kohya's layout (``lora_unet_..._to_q.lora_down.weight`` with an ``alpha`` each)."""
    from safetensors.torch import save_file

    out = {}
    for key, value in (state or lora_state()).items():
        module, _, rest = key.rpartition(".lora_")
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.lora_{'down' if rest.startswith('A') else 'up'}.weight"] = value.contiguous()
        out[f"{name}.alpha"] = torch.tensor(4.0)
    save_file(out, str(path))
    return path


# ---------------------------------------------------------------- original (LDM) single-file layout

def _ldm_unet_names(unet) -> dict[str, str]:
    """diffusers U-Net parameter name -> original LDM name, for the tiny U-Net's block structure."""
    layers = unet.config.layers_per_block
    mapping = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    levels = len(unet.config.block_out_channels)
    for i in range(levels):
        for j in range(layers):
            block = i * (layers + 1) + j + 1
            mapping[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{block}.0"
            mapping[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{block}.1"
        if i < levels - 1:
            mapping[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(i + 1) * (layers + 1)}.0.op"
        for j in range(layers + 1):
            block = i * (layers + 1) + j
            mapping[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{block}.0"
            mapping[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{block}.1"
        if i < levels - 1:
            has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in unet.state_dict())
            mapping[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{i * (layers + 1) + layers}.{2 if has_attention else 1}.conv"
    mapping.update({"mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1",
                    "mid_block.resnets.1": "middle_block.2"})
    return mapping


_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _rename(name: str, prefixes: dict[str, str], inner: dict[str, str]) -> str:
    for new in sorted(prefixes, key=len, reverse=True):
        if name.startswith(new + "."):
            head, _, leaf = name[len(new) + 1:].rpartition(".")
            return ".".join(part for part in (prefixes[new], inner.get(head, head), leaf) if part)
    return name


def ldm_unet_state(unet) -> dict[str, torch.Tensor]:
    prefixes = _ldm_unet_names(unet)
    out = {}
    for name, value in unet.state_dict().items():
        new = _rename(name, prefixes, _RESNET)
        out["model.diffusion_model." + new] = value
    return out


def ldm_vae_state(vae) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in vae.state_dict().items():
        new = name
        for part in ("encoder", "decoder"):
            new = re.sub(rf"^{part}\.mid_block\.resnets\.(\d)", lambda m: f"{part}.mid.block_{int(m[1]) + 1}", new)
            new = re.sub(rf"^{part}\.mid_block\.attentions\.0\.", f"{part}.mid.attn_1.", new)
            new = new.replace(f"{part}.conv_norm_out", f"{part}.norm_out")
        levels = len(vae.config.block_out_channels)
        new = re.sub(r"^encoder\.down_blocks\.(\d)\.resnets\.(\d)", r"encoder.down.\1.block.\2", new)
        new = re.sub(r"^encoder\.down_blocks\.(\d)\.downsamplers\.0", r"encoder.down.\1.downsample", new)
        new = re.sub(r"^decoder\.up_blocks\.(\d)\.resnets\.(\d)", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}", new)
        new = re.sub(r"^decoder\.up_blocks\.(\d)\.upsamplers\.0", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample", new)
        new = new.replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"attn_1\.group_norm", "attn_1.norm", new)
        for old, ldm in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            if f"attn_1.{old}." in new:
                new = new.replace(f"attn_1.{old}.", f"attn_1.{ldm}.")
                if value.ndim == 2:
                    value = value[:, :, None, None]  # the original attention uses 1x1 convolutions
        out["first_stage_model." + new] = value
    return out


def save_single_file_sd(path: Path, pipe=None) -> Path:
    """The tiny pipeline as one original-layout checkpoint (``model.diffusion_model.``, ``first_stage_model.``,
    ``cond_stage_model.transformer.``), as community sites distribute Stable Diffusion."""
    from safetensors.torch import save_file

    pipe = pipe or sd_pipeline()
    state = {**ldm_unet_state(pipe.unet), **ldm_vae_state(pipe.vae)}
    for name, value in pipe.text_encoder.state_dict().items():
        state["cond_stage_model.transformer.text_model." + name.removeprefix("text_model.")] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def save_config_folder(folder: Path, pipe=None) -> Path:
    """The tiny pipeline's configs without weights: what ``--base-config`` takes for its single file."""
    pipe = pipe or sd_pipeline()
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    for weights in folder.glob("*/*.safetensors"):
        weights.unlink()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    return folder
