"""Step-to-step feature caching for U-Net video denoisers (DeepCache-style, and an adaptive rule).

Between neighbouring denoising steps the inner part of a U-Net changes little (Ma et al. 2023,
"DeepCache"). :class:`FeatureCache` recomputes it only on *full* calls and reuses its outputs on
the others. What runs on every call is DeepCache's outermost skip branch: the input convolution
(and the time embedding), the last layer of the last up block, which joins the input
convolution's skip connection, and the output layers. Everything between them comes from the cache:

* ``deep:K``: a full call every K denoiser calls (K = 1 recomputes everything, bit-identical to no cache);
* ``adaptive:T``: a full call when the input convolution's output has moved by more than T (mean
  absolute change relative to its size) since the last full call, the input-change rule of
  TeaCache and first-block caching, at the cost of nothing extra.

The cached modules are the U-Net's own blocks and layers (all down blocks, the mid block, the up
blocks but the last, and the last up block's layers but its last one), so the same code serves
``UNetMotionModel`` and ``UNet3DConditionModel``; the U-Net's ``forward`` is not rewritten.
Classifier-free guidance batches both branches in one call, so both are cached together; a call
that runs the conditional branch alone (outside the guidance interval) takes the conditional half
of the cache. A cache lives for one video (one pipeline call): nothing carries over to the next.
A long video denoised in context windows keeps one cache per window (:meth:`FeatureCache.use`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from vidgen.errors import InputError

CACHE_KINDS = ("none", "deep", "adaptive")


@dataclass(frozen=True)
class CacheSpec:
    """A parsed ``--cache`` value."""

    kind: str = "none"
    interval: int = 1  # deep: a full call every `interval` calls
    threshold: float = 0.0  # adaptive: relative change of the probe that forces a full call

    def __str__(self) -> str:
        if self.kind == "deep":
            return f"deep:{self.interval}"
        if self.kind == "adaptive":
            return f"adaptive:{self.threshold:g}"
        return "none"


def parse_cache_spec(spec: str | None) -> CacheSpec:
    """``none``, ``deep:K`` (K >= 1) or ``adaptive:T`` (T >= 0) -> :class:`CacheSpec`.

    Raises:
        InputError: any other value.
    """
    if spec is None or str(spec).strip().lower() in ("", "none"):
        return CacheSpec()
    kind, sep, value = str(spec).strip().lower().partition(":")
    usage = "use none, deep:K (recompute the deep blocks every K steps, K >= 1) or adaptive:T (T >= 0, e.g. 0.1)"
    if kind == "deep":
        if not sep or not value.isdecimal() or not value.isascii() or int(value) < 1:
            raise InputError(f"cache {spec!r}: deep:K needs a whole number K >= 1; {usage}")
        return CacheSpec("deep", interval=int(value))
    if kind == "adaptive":
        try:
            threshold = float(value)
        except ValueError:
            threshold = float("nan")
        if not sep or not math.isfinite(threshold) or threshold < 0:
            raise InputError(f"cache {spec!r}: adaptive:T needs a finite threshold T >= 0; {usage}")
        return CacheSpec("adaptive", threshold=threshold)
    raise InputError(f"unknown cache {spec!r}; {usage}")


def _map(fn: Callable[[torch.Tensor], torch.Tensor], value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_map(fn, v) for v in value)
    return value


@dataclass
class CacheStats:
    """What a cache did during one video: denoiser calls run in full and from the cache."""

    full: int = 0
    cached: int = 0
    full_calls: list[int] = field(default_factory=list)  # call indices that ran in full


@dataclass
class _Slot:
    """The cache of one stream of calls: stored features, the last full call's probe, calls since it."""

    store: dict[str, Any] = field(default_factory=dict)
    stored_batch: int | None = None
    probe: torch.Tensor | None = None
    since_full: int = 0


class FeatureCache:
    """Caches the deep blocks of ``unet`` across denoiser calls while active (a context manager).

    Args:
        unet: a ``UNetMotionModel`` or ``UNet3DConditionModel`` (anything with ``down_blocks``,
            ``mid_block`` and ``up_blocks``).
        spec: a :class:`CacheSpec` (or its text form).
    """

    def __init__(self, unet, spec: CacheSpec | str | None):
        self.unet = unet
        self.spec = spec if isinstance(spec, CacheSpec) else parse_cache_spec(spec)
        self.stats = CacheStats()
        self._slots: dict[Any, _Slot] = {}
        self._slot = _Slot()
        self._full = True
        self._batch = 0
        self._calls = 0
        self._originals: list[tuple[torch.nn.Module, Any]] = []
        self._hook = None

    @property
    def active(self) -> bool:
        return self.spec.kind != "none"

    def use(self, key: Any) -> None:
        """Cache the calls that follow under ``key`` (one per context window): each key keeps its own
        features and its own count towards the next full call."""
        slot = self._slots.get(key)
        if slot is None:  # the first key takes the slot the calls so far used
            slot = self._slots[key] = self._slot if not self._slots else _Slot()
        self._slot = slot

    # ------------------------------------------------------------ wiring

    def __enter__(self) -> "FeatureCache":
        if not self.active:
            return self
        for name, module in self._inner_modules():
            self._wrap(module, self._deep_forward(name, module.forward))
        self._wrap(self.unet.conv_in, self._probe_forward(self.unet.conv_in.forward))
        self._hook = self.unet.register_forward_pre_hook(self._start_call, with_kwargs=True)
        return self

    def _inner_modules(self) -> list[tuple[str, torch.nn.Module]]:
        """Everything between the input convolution and the last up block's last layer."""
        unet = self.unet
        inner = [(f"down{i}", block) for i, block in enumerate(unet.down_blocks)] + [("mid", unet.mid_block)]
        inner += [(f"up{i}", block) for i, block in enumerate(unet.up_blocks[:-1])]
        last = unet.up_blocks[-1]
        layers = len(last.resnets)
        if layers < 2:
            raise InputError(f"cache {self.spec}: the last up block of this U-Net has one layer; caching needs two")
        for list_name, modules in last.named_children():  # resnets, attentions, motion_modules / temp_convs, ...
            if isinstance(modules, torch.nn.ModuleList) and len(modules) == layers:
                inner += [(f"last.{list_name}.{j}", modules[j]) for j in range(layers - 1)]
        return inner

    def __exit__(self, *exc) -> None:
        for module, original in reversed(self._originals):
            if original is None:
                del module.forward
            else:
                module.forward = original
        self._originals.clear()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._slots.clear()
        self._slot = _Slot()

    def _wrap(self, module: torch.nn.Module, forward) -> None:
        self._originals.append((module, module.__dict__.get("forward")))
        module.forward = forward

    # ------------------------------------------------------------ per call

    def _start_call(self, module, args, kwargs) -> None:
        sample = args[0] if args else kwargs["sample"]
        self._batch = int(sample.shape[0])
        usable = self._slot.store and self._slot.stored_batch in (self._batch, 2 * self._batch)
        if not usable:
            self._full = True
        elif self.spec.kind == "deep":
            self._full = self._slot.since_full + 1 >= self.spec.interval
        else:
            self._full = False  # adaptive: the probe decides once the first block has run
        if self.spec.kind == "deep":
            self._count()

    def _count(self) -> None:
        index = self._calls
        self._calls += 1
        if self._full:
            self.stats.full += 1
            self.stats.full_calls.append(index)
            self._slot.since_full = 0
            self._slot.store.clear()
            self._slot.stored_batch = self._batch
        else:
            self.stats.cached += 1
            self._slot.since_full += 1

    def _take(self, value: Any) -> Any:
        """A stored value for this call's batch: all of it, or the conditional (second) half."""
        if self._slot.stored_batch == self._batch:
            return value
        return _map(lambda t: t[t.shape[0] // 2:], value)

    def _probe_forward(self, original):
        def forward(*args, **kwargs):
            out = original(*args, **kwargs)
            if self.spec.kind == "adaptive":
                probe = out.detach()
                if not self._full and self._slot.probe is not None:
                    reference = self._take(self._slot.probe).float()
                    change = (probe.float() - reference).abs().mean() / reference.abs().mean().clamp_min(1e-12)
                    self._full = bool(change > self.spec.threshold)
                self._count()
                if self._full:
                    self._slot.probe = probe
            return out

        return forward

    def _deep_forward(self, name: str, original):
        def forward(*args, **kwargs):
            if self._full:
                out = original(*args, **kwargs)
                self._slot.store[name] = out
                return out
            return self._take(self._slot.store[name])

        return forward
