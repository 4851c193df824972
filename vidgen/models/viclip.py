"""ViCLIP: InternVid's video CLIP (arXiv 2307.06942, Sec. 4.1): configs, towers, contrastive loss.

A spatiotemporal ViT encodes 8 frames jointly (one class token, attention over
every patch of every frame) and CLIP's text transformer encodes captions of up
to 32 tokens; both are projected into one embedding space. The parameter names
follow the official checkpoint (``vision_encoder.*``, ``text_encoder.*``,
``temp``), so ``ViClip-InternVid-10M-FLT.pth``, the Hugging Face
``ViCLIP-*-hf`` folders and our own export all load strictly into this module
(see :mod:`vidgen.models.viclip_io`).

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`.
Training may drop a fraction of the video tokens (``masking_prob``, 0.9 in the
paper); evaluation never does.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.errors import ConfigError, InputError

# The learned temperature starts at, and is clamped to no less than, 1/100 (logit scale <= 100).
TEMP_INIT = 0.01
TEMP_MIN = 0.01


@dataclass(frozen=True)
class ViCLIPConfig:
    """Sizes of a ViCLIP model.

    Args:
        embed_dim: size of the joint video/text embedding.
        image_size: frame height and width the model takes.
        patch_size: spatial patch size of the 1x p x p patch embedding.
        num_frames: frames per video.
        tubelet_size: frames per patch (the patch embedding is a ``tubelet x p x p``
            Conv3d, as in VideoMAE/UMT; the temporal position embedding has
            ``num_frames // tubelet_size`` rows). The released ViCLIPs use 1; 2 lets
            every patch token see local motion, so the video tower can tell a clip
            from the same clip played backwards from its first layer on.
        vision_width, vision_layers, vision_heads: the video transformer.
        text_width, text_layers, text_heads: the text transformer.
        context_length: text tokens per caption (32 for ViCLIP).
        vocab_size: text vocabulary (49408 for CLIP's BPE).
        masking_prob: fraction of video tokens dropped in training forwards.
    """

    embed_dim: int = 768
    image_size: int = 224
    patch_size: int = 14
    num_frames: int = 8
    tubelet_size: int = 1
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 32
    vocab_size: int = 49408
    masking_prob: float = 0.9

    def __post_init__(self) -> None:
        for name in ("embed_dim", "image_size", "patch_size", "num_frames", "tubelet_size", "vision_width", "vision_layers",
                     "vision_heads", "text_width", "text_layers", "text_heads", "context_length", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ViCLIP config: {name} must be a positive integer, got {value!r}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"ViCLIP config: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.num_frames % self.tubelet_size:
            raise ConfigError(f"ViCLIP config: num_frames {self.num_frames} is not a multiple of tubelet_size {self.tubelet_size}")
        if self.vision_width % self.vision_heads:
            raise ConfigError(f"ViCLIP config: vision_width {self.vision_width} is not divisible by vision_heads {self.vision_heads}")
        if self.text_width % self.text_heads:
            raise ConfigError(f"ViCLIP config: text_width {self.text_width} is not divisible by text_heads {self.text_heads}")
        if not 0.0 <= float(self.masking_prob) < 1.0:
            raise ConfigError(f"ViCLIP config: masking_prob must be in [0, 1), got {self.masking_prob}")

    @property
    def grid(self) -> int:
        """Patches per side of a frame."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain mapping (what ``config.json`` stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ViCLIPConfig":
        """Build from a mapping, ignoring keys that are not config fields.

        Raises:
            ConfigError: a value is invalid.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise ConfigError(f"ViCLIP config: {exc}") from None


# Named sizes. l14/b16 are the released models; toy is the toy world's scorer
# and text encoder; tiny keeps the tests fast.
CONFIGS: dict[str, ViCLIPConfig] = {
    "l14": ViCLIPConfig(),
    "b16": ViCLIPConfig(embed_dim=512, patch_size=16, vision_width=768, vision_layers=12, vision_heads=12,
                        text_width=512, text_layers=12, text_heads=8),
    "toy": ViCLIPConfig(embed_dim=128, image_size=64, patch_size=8, num_frames=8, vision_width=192, vision_layers=4,
                        vision_heads=3, text_width=128, text_layers=4, text_heads=2),
    "tiny": ViCLIPConfig(embed_dim=16, image_size=32, patch_size=8, num_frames=4, vision_width=32, vision_layers=2,
                         vision_heads=2, text_width=32, text_layers=2, text_heads=2),
}
# The Hugging Face folders' config.json says {"size": "l"} or {"size": "b"}.
SIZE_ALIASES = {"l": "l14", "b": "b16", "vit_l14": "l14", "vit_b16": "b16", "l-14": "l14", "b-16": "b16"}


def get_config(size: str | ViCLIPConfig) -> ViCLIPConfig:
    """A named config (``l14``, ``b16``, ``toy``, ``tiny``; ``l``/``b`` accepted) or the config itself.

    Raises:
        ConfigError: an unknown name.
    """
    if isinstance(size, ViCLIPConfig):
        return size
    key = SIZE_ALIASES.get(str(size).lower(), str(size).lower())
    if key not in CONFIGS:
        raise ConfigError(f"unknown ViCLIP size {size!r}; choose one of {', '.join(CONFIGS)} (or l / b)")
    return CONFIGS[key]


def config_name(config: ViCLIPConfig) -> str | None:
    """The name of a config that equals a named one (masking probability aside), else ``None``."""
    for name, named in CONFIGS.items():
        if dataclasses.replace(named, masking_prob=config.masking_prob) == config:
            return name
    return None


# ----------------------------------------------------------------------------- modules


class QuickGELU(nn.Module):
    """CLIP's activation, ``x * sigmoid(1.702 x)`` (Radford et al. 2021)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return x * torch.sigmoid(1.702 * x)
        # Inference: reuse the (temporary) MLP activation buffer; the largest tensor of each block.
        return x.mul_(torch.sigmoid_(x * 1.702))


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (as CLIP's text tower does under fp16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names, run through SDPA.

    Inputs are batch-first ``[B, N, width]`` (no transposes around the call).
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, n, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, width))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` with a QuickGELU MLP."""

    def __init__(self, width: int, heads: int, layer_norm: type[nn.LayerNorm] = nn.LayerNorm):
        super().__init__()
        self.ln_1 = layer_norm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = layer_norm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(4 * width, width)),
        ]))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of :class:`ResidualAttentionBlock` (``resblocks.{i}`` in the checkpoint)."""

    def __init__(self, width: int, layers: int, heads: int, layer_norm: type[nn.LayerNorm] = nn.LayerNorm):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, layer_norm) for _ in range(layers)])

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, causal=causal)
        return x


class VisionTransformer(nn.Module):
    """ViCLIP's video encoder: ``[B, T, 3, H, W]`` -> ``[B, embed_dim]``.

    Every frame (every ``tubelet_size`` frames) is cut into ``p x p`` patches (a
    ``tubelet x p x p`` Conv3d); each patch token gets its spatial position
    embedding and its frame's (tubelet's) temporal embedding; tokens are ordered patch-major, frame-minor; one class token
    (class embedding + position 0, no temporal embedding) leads them through
    the transformer, and its final state times ``proj`` is the embedding.
    """

    def __init__(self, config: ViCLIPConfig):
        super().__init__()
        self.config = config
        width, p = config.vision_width, config.patch_size
        k = config.tubelet_size
        self.conv1 = nn.Conv3d(3, width, (k, p, p), (k, p, p), bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(config.grid**2 + 1, width))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, config.num_frames // k, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, config.vision_layers, config.vision_heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, config.embed_dim))

    def check_input(self, video: torch.Tensor) -> None:
        """Raise :class:`InputError` unless ``video`` is ``[B, T, 3, S, S]`` with the model's sizes."""
        c = self.config
        if video.ndim != 5 or video.shape[2] != 3:
            raise InputError(f"video batch must be [B, T, 3, H, W], got shape {tuple(video.shape)}")
        t, h, w = video.shape[1], video.shape[3], video.shape[4]
        if (h, w) != (c.image_size, c.image_size):
            raise InputError(f"ViCLIP takes {c.image_size}x{c.image_size} frames, got {h}x{w}")
        if t not in (1, c.num_frames):
            raise InputError(f"ViCLIP takes {c.num_frames} frames (or 1), got {t}")

    def forward(self, video: torch.Tensor, masking_prob: float = 0.0) -> torch.Tensor:
        x = self.transformer(self.embed(video, masking_prob))
        return self.ln_post(x[:, 0]) @ self.proj.to(x.dtype)

    def embed(self, video: torch.Tensor, masking_prob: float = 0.0) -> torch.Tensor:
        """Patch (tubelet) tokens with their position and frame embeddings, the class token first, after ``ln_pre``."""
        self.check_input(video)
        b, t, _, h, w = video.shape
        k = self.config.tubelet_size
        if k == 1:
            # A 1 x p x p Conv3d is a per-frame Conv2d: run it as one, on the [B*T] frames.
            patches = F.conv2d(video.reshape(b * t, 3, h, w), self.conv1.weight[:, :, 0], stride=self.config.patch_size)
        else:
            if t == 1:  # a single image fills a whole tubelet (VideoMAE's inflation)
                video, t = video.expand(b, k, 3, h, w), k
            patches = self.conv1(video.transpose(1, 2))  # [B, width, T/k, g, g]
            t //= k
            patches = patches.transpose(1, 2).reshape(b * t, -1, *patches.shape[-2:])
        width, n = patches.shape[1], patches.shape[2] * patches.shape[3]
        x = patches.reshape(b, t, width, n).permute(0, 3, 1, 2)  # [B, N, T, width]: patch-major, frame-minor
        x = x + self.positional_embedding[1:].to(x.dtype)[None, :, None, :]
        temporal = self.temporal_positional_embedding
        if t == 1:
            temporal = temporal.mean(1, keepdim=True)  # single images: the average frame position
        x = (x + temporal.to(x.dtype)[:, None]).reshape(b, n * t, width)
        if masking_prob > 0.0:
            x = mask_tokens(x, masking_prob)
        cls = (self.class_embedding + self.positional_embedding[0]).to(x.dtype).expand(b, 1, width)
        return self.ln_pre(torch.cat([cls, x], dim=1))


def mask_tokens(tokens: torch.Tensor, masking_prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep a random ``1 - masking_prob`` of the tokens of each sample (ViCLIP/UMT training; order kept).

    Args:
        tokens: ``[B, L, D]``.
        masking_prob: fraction dropped; ``int(masking_prob * L)`` tokens go.

    Returns:
        ``[B, L - int(masking_prob * L), D]``.
    """
    b, length, d = tokens.shape
    keep = length - int(masking_prob * length)
    noise = torch.rand(b, length, device=tokens.device, generator=generator)
    index = noise.argsort(dim=1)[:, :keep].sort(dim=1).values
    return tokens.gather(1, index[..., None].expand(b, keep, d))


class TextTransformer(nn.Module):
    """CLIP's text encoder: token ids ``[B, L]`` -> ``[B, embed_dim]`` (features at the end token)."""

    def __init__(self, config: ViCLIPConfig):
        super().__init__()
        self.config = config
        # An explicit weight skips nn.Embedding's own init (reset_parameters sets it), which on the meta
        # device used for loading costs a slow first-time decomposition of normal_.
        self.token_embedding = nn.Embedding(config.vocab_size, config.text_width,
                                            _weight=torch.empty(config.vocab_size, config.text_width))
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.text_width))
        self.transformer = Transformer(config.text_width, config.text_layers, config.text_heads, FP32LayerNorm)
        self.ln_final = FP32LayerNorm(config.text_width)
        self.text_projection = nn.Parameter(torch.empty(config.text_width, config.embed_dim))

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        """The final-layer-normed token states ``[B, L, text_width]`` (causal attention)."""
        if ids.ndim != 2:
            raise InputError(f"token ids must be [B, L], got shape {tuple(ids.shape)}")
        length = ids.shape[1]
        if length > self.config.context_length:
            raise InputError(f"{length} text tokens given; the context length is {self.config.context_length}")
        x = self.token_embedding(ids) + self.positional_embedding[:length].to(self.token_embedding.weight.dtype)
        return self.ln_final(self.transformer(x, causal=True))

    def pool(self, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Project the state at the end token (the largest id in each row, as CLIP finds it)."""
        end = ids.argmax(dim=-1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), end] @ self.text_projection.to(hidden.dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.pool(self.hidden_states(ids), ids)


class ViCLIPOutput(NamedTuple):
    """Embeddings of a training/eval forward (not normalised) and the current logit scale ``1 / temp``."""

    video_embeds: torch.Tensor
    text_embeds: torch.Tensor
    logit_scale: torch.Tensor


class ViCLIP(nn.Module):
    """ViCLIP: video and text towers plus the learned contrastive temperature ``temp``.

    Example:
        >>> from vidgen.models.tokenizer import CLIPBPETokenizer
        >>> model = ViCLIP("tiny").eval()
        >>> video = torch.randn(2, 4, 3, 32, 32)
        >>> ids = CLIPBPETokenizer(32)(["a red circle", "a blue square"])
        >>> sims = normalize(model.encode_video(video)) @ normalize(model.encode_text(ids)).T
    """

    def __init__(self, config: ViCLIPConfig | str = "l14", init: bool = True):
        super().__init__()
        self.config = get_config(config)
        self.vision_encoder = VisionTransformer(self.config)
        self.text_encoder = TextTransformer(self.config)
        self.temp = nn.Parameter(torch.tensor(TEMP_INIT))
        # The text vocabulary when it is not CLIP's full one (a trimmed model's; see vidgen.models.tokenizer).
        self.vocabulary = None
        if init:
            self.reset_parameters()

    def tokenizer(self):
        """A :class:`~vidgen.models.tokenizer.CLIPBPETokenizer` for this model's text tower
        (its own vocabulary when it has one, else CLIP's)."""
        from vidgen.models.tokenizer import CLIPBPETokenizer

        return CLIPBPETokenizer(self.config.context_length, vocabulary=self.vocabulary)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """CLIP's initialisation (Radford et al. 2021, released code): scaled normals, zero biases, zero temporal embedding."""
        for encoder, width, layers in ((self.vision_encoder, self.config.vision_width, self.config.vision_layers),
                                       (self.text_encoder, self.config.text_width, self.config.text_layers)):
            attn_std, fc_std = width**-0.5, (2 * width) ** -0.5
            proj_std = width**-0.5 * (2 * layers) ** -0.5
            for block in encoder.transformer.resblocks:
                nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
                nn.init.zeros_(block.attn.in_proj_bias)
                nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
                nn.init.zeros_(block.attn.out_proj.bias)
                nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
                nn.init.zeros_(block.mlp.c_fc.bias)
                nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
                nn.init.zeros_(block.mlp.c_proj.bias)
                for ln in (block.ln_1, block.ln_2):
                    nn.init.ones_(ln.weight)
                    nn.init.zeros_(ln.bias)
        v, t = self.vision_encoder, self.text_encoder
        scale = self.config.vision_width**-0.5
        nn.init.normal_(v.conv1.weight, std=(3 * self.config.tubelet_size * self.config.patch_size**2) ** -0.5)
        nn.init.normal_(v.class_embedding, std=scale)
        nn.init.normal_(v.positional_embedding, std=scale)
        nn.init.zeros_(v.temporal_positional_embedding)
        nn.init.normal_(v.proj, std=scale)
        nn.init.normal_(t.token_embedding.weight, std=0.02)
        nn.init.normal_(t.positional_embedding, std=0.01)
        nn.init.normal_(t.text_projection, std=self.config.text_width**-0.5)
        for ln in (v.ln_pre, v.ln_post, t.ln_final):
            nn.init.ones_(ln.weight)
            nn.init.zeros_(ln.bias)
        self.temp.fill_(TEMP_INIT)

    @property
    def logit_scale(self) -> torch.Tensor:
        """``1 / temp``: the factor on cosine similarities in the contrastive loss."""
        return 1.0 / self.temp

    def encode_video(self, video: torch.Tensor, masking_prob: float | None = None) -> torch.Tensor:
        """Video embeddings ``[B, embed_dim]`` (not normalised) of ``[B, T, 3, H, W]`` normalised frames.

        Args:
            video: preprocessed frames (see :mod:`vidgen.metrics.preprocess`).
            masking_prob: fraction of video tokens to drop; ``None`` uses the
                config's value in training mode and 0 in eval mode.
        """
        if masking_prob is None:
            masking_prob = self.config.masking_prob if self.training else 0.0
        return self.vision_encoder(video, masking_prob=masking_prob)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Text embeddings ``[B, embed_dim]`` (not normalised) of token ids ``[B, L]`` (``L <= context_length``)."""
        return self.text_encoder(ids)

    def forward(self, video: torch.Tensor, ids: torch.Tensor, masking_prob: float | None = None) -> ViCLIPOutput:
        """Both towers, for a training step (pair with :func:`contrastive_loss`) or evaluation.

        In training mode the temperature is first clamped to ``>= 0.01`` as
        the reference does before every step.
        """
        if self.training:
            with torch.no_grad():
                self.temp.clamp_(min=TEMP_MIN)
        return ViCLIPOutput(self.encode_video(video, masking_prob), self.encode_text(ids), self.logit_scale)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dimension."""
    return F.normalize(x, dim=-1)


def contrastive_loss(
    video_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    temp: torch.Tensor | float,
    sample_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch (CLIP, Radford et al. 2021; ViCLIP's VTC loss).

    ``logits = cos(video_i, text_j) / temp``; the loss is the mean of the
    video->text and text->video cross-entropies. With ``sample_ids`` pairs that
    share an id (one clip with several captions) are all positives, each with
    equal target weight.

    Args:
        video_embeds: ``[B, D]`` raw video embeddings.
        text_embeds: ``[B, D]`` raw text embeddings.
        temp: the temperature (``model.temp``; a tensor keeps it learnable).
        sample_ids: optional ``[B]`` ids marking which pairs show the same clip.

    Returns:
        Scalar loss.
    """
    if video_embeds.shape != text_embeds.shape or video_embeds.ndim != 2:
        raise InputError(f"embeddings must both be [B, D], got {tuple(video_embeds.shape)} and {tuple(text_embeds.shape)}")
    logits = normalize(video_embeds) @ normalize(text_embeds).T / temp
    if sample_ids is None:
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    same = (sample_ids.view(-1, 1) == sample_ids.view(1, -1)).to(logits.dtype)
    weights = same / same.sum(dim=1, keepdim=True)
    v2t = -(F.log_softmax(logits, dim=1) * weights).sum(1).mean()
    t2v = -(F.log_softmax(logits.T, dim=1) * weights).sum(1).mean()
    return (v2t + t2v) / 2
