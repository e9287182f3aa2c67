"""Training of the TCAE (:mod:`mugle_nets.tcae` holds the network, its options and the embedder).

The loss is the autoencoder's reconstruction MSE plus an invariance term: two views of each song, each
at its own tempo, shifted by whole mel bands (key), given another spectral envelope and level
(instrument, mix), sometimes laid over another song (an accompaniment), must embed close together and
apart from the other songs of the batch (InfoNCE). Before training, the embedding head's whitening is
fitted on training songs. The trained model is saved with :class:`~mugle_nets.tcae.TCAEEmbedder`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mugle_nets.device import resolve_device
from mugle_nets.mels import (
    STATS_FILE,
    LoadReport,
    MelClipDataset,
    MelCropDataset,
    MelStats,
    compute_mel_stats,
    make_loader,
    usable_batch,
)
from mugle_nets.tcae import TCAE, ModulationBlend, TCAEEmbedder, TCAEOptions, fit_length_t, modulation_spectrum

logger = logging.getLogger(__name__)



# -- augmentation -------------------------------------------------------------------------------------


def augment(x: torch.Tensor, options: TCAEOptions, generator: torch.Generator) -> torch.Tensor:
    """A new "performance" of standardised crops: key, instrument, level, noise and accompaniment.

    Shifting by whole mel bands stands in for a change of key; a smooth random curve over the bands
    (sum of low-order cosines) and a level offset stand in for another instrument or mix. Bands
    shifted in from outside repeat the edge band rather than inventing content. With probability
    ``options.mix`` another song of the batch is laid underneath, a few standard units quieter: in
    log-mel terms the louder of the two wins, which is roughly how an accompaniment adds.
    """
    b, n, t = x.shape
    device = x.device
    out = x
    s = options.max_band_shift
    if s > 0:
        shift = torch.randint(-s, s + 1, (b, 1), generator=generator).to(device)
        idx = (torch.arange(n, device=device)[None, :] - shift).clamp(0, n - 1)
        out = torch.gather(out, 1, idx[:, :, None].expand(b, n, t))
    if options.timbre > 0:
        bands = torch.linspace(0, math.pi, n, device=device)
        orders = torch.arange(1, 4, device=device, dtype=x.dtype)
        coef = torch.randn(b, 3, generator=generator).to(device) * options.timbre
        envelope = (coef[:, :, None] * torch.cos(orders[None, :, None] * bands[None, None, :])).sum(1)
        level = torch.randn(b, 1, generator=generator).to(device) * options.timbre
        out = out + (envelope + level)[:, :, None]
    if options.mix > 0 and b > 1:
        other = torch.roll(out, 1, dims=0)
        offset = (-0.5 - 1.5 * torch.rand(b, 1, 1, generator=generator)).to(device)
        chosen = (torch.rand(b, 1, 1, generator=generator) < options.mix).to(device)
        out = torch.where(chosen, torch.maximum(out, other + offset), out)
    if options.noise > 0:
        out = out + torch.randn(out.shape, generator=generator).to(device) * options.noise
    return out


def view_pair(
    window: torch.Tensor, options: TCAEOptions, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of ``raw_crop`` frames per song, each at its own place in the window and its own tempo.

    The second view starts up to ``view_span`` of the window away from the first, so the pair shares
    the song (its tune, its rhythm) but not necessarily the same bars; each view is read over a span
    ``1 +- stretch`` times the crop and resampled to the crop, a tempo change.
    """
    b, _, t = window.shape
    crop = options.raw_crop
    if t <= crop:
        piece = fit_length_t(window, crop)
        return piece, piece.clone()
    scales = 1.0 + (torch.rand(2, b, generator=generator) * 2.0 - 1.0) * options.stretch
    firsts = torch.rand(2, b, generator=generator)
    span = options.view_span
    out: list[list[torch.Tensor]] = [[], []]
    for i in range(b):
        lengths = [min(t, max(2, int(round(crop * float(scales[v, i]))))) for v in (0, 1)]
        start_a = int(float(firsts[0, i]) * (t - lengths[0] + 1))
        # The second start: uniform within +-span of the clip around the first, kept inside the window.
        lo = max(0, start_a - int(span * t))
        hi = min(t - lengths[1], start_a + int(span * t))
        start_b = min(lo + int(float(firsts[1, i]) * (max(hi, lo) - lo + 1)), t - lengths[1])
        for v, (start, length) in enumerate(zip((start_a, start_b), lengths, strict=True)):
            seg = window[i : i + 1, :, start : start + length]
            if length != crop:
                seg = F.interpolate(seg, size=crop, mode="linear", align_corners=False)
            out[v].append(seg)
    return torch.cat(out[0], dim=0), torch.cat(out[1], dim=0)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` must match row i of ``b`` against all other rows."""
    a = F.normalize(a.float(), dim=1)
    b = F.normalize(b.float(), dim=1)
    logits = a @ b.T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


# -- training -----------------------------------------------------------------------------------------


def warmup_cosine(opt: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1) -> Any:
    """Linear warm-up over the first ``warmup`` share of steps, then cosine decay to 5 %; any length works."""
    warm = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def split_songs(ids: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split song ids into (train, validation) by a seeded permutation; validation may be empty."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    n_val = int(round(len(ids) * fraction)) if len(ids) >= 10 else 0
    return np.sort(ids[order[n_val:]]), np.sort(ids[order[:n_val]])


def _cycle(loader: Any, dataset: MelCropDataset) -> Any:
    epoch = 0
    while True:
        dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


def train_tcae(
    mel_paths: dict[int, Path],
    options: TCAEOptions | None = None,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    models_dir: Path | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Train the TCAE on the given mels and embed every song whose mel can be read.

    Parameters
    ----------
    mel_paths : song id -> mel file.
    options : see :class:`TCAEOptions`; defaults when None.
    seed : makes the run deterministic on the CPU.
    device : ``auto``, ``cpu`` or ``cuda``.
    models_dir : where ``mel_stats.npz`` and ``tcae.pt`` are written (nothing saved when None).
    progress : show a tqdm bar.

    Returns
    -------
    ids : int64 (n,), ascending song ids that got a vector.
    vectors : float32 (n, dim), L2-normalised.
    info : the run's details for the manifest (timings, validation history, load counts, device, seed).

    Raises
    ------
    ValueError
        When ``mel_paths`` is empty or no mel is readable.
    """
    options = options or TCAEOptions()
    if not mel_paths:
        raise ValueError("train_tcae: mel_paths is empty (no song has a mel file)")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    started = time.perf_counter()

    all_ids = np.array(sorted(int(k) for k in mel_paths), dtype=np.int64)
    train_ids, val_ids = split_songs(all_ids, options.val_fraction, seed)
    stats_report = LoadReport()
    stats = compute_mel_stats(
        [mel_paths[int(i)] for i in train_ids], sample=options.stats_sample, seed=seed, report=stats_report
    )
    if models_dir is not None:
        stats.save(Path(models_dir) / STATS_FILE)

    model = TCAE(**options.model_config()).to(dev)
    _init_head(model, [mel_paths[int(i)] for i in train_ids], stats, options, seed, dev)
    model.head.requires_grad_(options.train_head)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    sched = warmup_cosine(opt, options.steps)
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    aug_gen = torch.Generator().manual_seed(seed + 1)

    train_set = MelCropDataset([mel_paths[int(i)] for i in train_ids], stats, options.window, seed=seed)
    bs = min(options.batch_size, max(2, len(train_set)))
    loader = make_loader(train_set, bs, shuffle=True, workers=options.workers, seed=seed, drop_last=len(train_set) > bs)
    val_batches = _validation_batches(mel_paths, val_ids, stats, options, seed)

    report = LoadReport()
    best_state: dict[str, torch.Tensor] | None = None
    best_val = math.inf
    history: list[dict[str, float]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=options.steps, desc="tcae", unit="step")
    batches = _cycle(loader, train_set)
    step = 0
    empty_streak = 0
    while step < options.steps:
        x, _ = usable_batch(next(batches), report)
        if x.shape[0] < 2:
            empty_streak += 1
            if empty_streak > 1000:
                raise ValueError(f"train_tcae: no readable mel in the training stream ({report.summary()})")
            continue
        empty_streak = 0
        model.train()
        inputs = _training_inputs(x.to(dev, non_blocking=True), options, aug_gen)
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
            loss, parts = _loss(model, inputs, options)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % options.eval_every == 0 or step == options.steps:
            val = _validation_loss(model, val_batches, options, dev, use_amp) if val_batches else float(loss.item())
            history.append({"step": step, "loss": float(loss.item()), "val_loss": val, **parts})
            logger.debug("tcae step %d loss %.4f val %.4f %s", step, loss.item(), val, parts)
            if val < best_val:
                best_val = val
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    if bar is not None:
        bar.close()
    assert best_state is not None  # at least one validation ran (step == options.steps)
    model.load_state_dict(best_state)
    if model.blend is not None:
        _fit_blend(model.blend, [mel_paths[int(i)] for i in train_ids], stats, options, seed)
    train_seconds = time.perf_counter() - started

    embedder = TCAEEmbedder(model, stats, options, dev)
    ids, vectors, embed_report = embedder.embed_paths(all_ids, [mel_paths[int(i)] for i in all_ids])
    info = {
        "train_seconds": round(train_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "best_val_loss": best_val,
        "history": history,
        "songs": {"train": len(train_ids), "val": len(val_ids), "embedded": len(ids)},
        "stats_files": stats.files,
        "load_report": {"stats": dict(stats_report), "train": dict(report), "embed": dict(embed_report)},
        "device": str(dev),
        "seed": seed,
    }
    logger.info(
        "tcae: %d songs embedded in %.1fs (best validation loss %.4f; skipped: %s)",
        len(ids), info["total_seconds"], best_val, embed_report.summary(),
    )
    if models_dir is not None:
        embedder.save(Path(models_dir), info)
    return ids, vectors, info


def _training_inputs(
    window: torch.Tensor, options: TCAEOptions, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The crops one step trains on: two augmented views per song, or one plain crop without invariance."""
    if options.invariance_weight <= 0:
        return fit_length_t(window, options.raw_crop), None
    a, b = view_pair(window, options, generator)
    return augment(a, options, generator), augment(b, options, generator)


def _loss(
    model: TCAE, inputs: tuple[torch.Tensor, torch.Tensor | None], options: TCAEOptions
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted autoencoder MSE (on the first view) plus InfoNCE between the two views."""
    a, b = inputs
    ha = model.features(a)
    parts: dict[str, float] = {}
    loss = torch.zeros((), device=a.device)
    if options.recon_weight > 0:
        mse = model.reconstruction_loss(a, ha)
        parts["mse"] = float(mse.detach())
        loss = loss + options.recon_weight * mse
    if b is not None and options.invariance_weight > 0:
        nce = info_nce(model.project(model.spectrum(a, ha)), model.encode(b), options.temperature)
        parts["nce"] = float(nce.detach())
        loss = loss + options.invariance_weight * nce
    return loss, parts


@torch.no_grad()
def _init_head(
    model: TCAE, paths: list[Path], stats: MelStats, options: TCAEOptions, seed: int, dev: torch.device
) -> None:
    """Whitening PCA of the untrained model's clip spectra over a sample of training songs."""
    rng = np.random.default_rng(seed + 7)
    chosen = [paths[int(i)] for i in np.sort(rng.permutation(len(paths))[: options.head_sample])]
    model.eval()
    embedder = TCAEEmbedder(model, stats, options, dev)
    spectra = []
    loader = make_loader(MelClipDataset(chosen, stats), options.embed_batch, shuffle=False, workers=options.workers)
    for batch in loader:
        x, _ = usable_batch(batch)
        if len(x):
            spectra.append(embedder.spectra(x).cpu())
    if not spectra:
        raise ValueError(f"train_tcae: no readable mel among {len(chosen)} files sampled for the embedding head")
    model.init_head(torch.cat(spectra))


def _fit_blend(blend: ModulationBlend, paths: list[Path], stats: MelStats, options: TCAEOptions, seed: int) -> None:
    """Standardisation and whitening PCA of the modulation feature over a sample of training songs."""
    rng = np.random.default_rng(seed + 104729)
    chosen = [paths[int(i)] for i in np.sort(rng.permutation(len(paths))[: options.blend_sample])]
    feats = []
    loader = make_loader(MelClipDataset(chosen, stats), options.embed_batch, shuffle=False, workers=options.workers)
    for batch in loader:
        x, _ = usable_batch(batch)
        if len(x):
            feats.append(modulation_spectrum(x))
    if not feats:
        raise ValueError(f"train_tcae: no readable mel among {len(chosen)} files sampled for the blend feature")
    blend.fit(torch.cat(feats))


def _validation_batches(
    mel_paths: dict[int, Path], val_ids: np.ndarray, stats: MelStats, options: TCAEOptions, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Fixed, already augmented inputs of the held-out songs (at most 512), made once so every
    validation is comparable."""
    if len(val_ids) == 0:
        return []
    chosen = val_ids[:512]
    ds = MelCropDataset([mel_paths[int(i)] for i in chosen], stats, options.window, seed=seed + 7919)
    gen = torch.Generator().manual_seed(seed + 15485863)
    out = []
    for batch in make_loader(ds, max(2, options.batch_size), shuffle=False, workers=0):
        x, _ = usable_batch(batch)
        if len(x) >= 2:
            out.append(_training_inputs(x, options, gen))
    return out


@torch.no_grad()
def _validation_loss(
    model: TCAE, batches: list[tuple[torch.Tensor, torch.Tensor | None]], options: TCAEOptions,
    dev: torch.device, use_amp: bool,
) -> float:
    model.eval()
    total, count = 0.0, 0
    for a, b in batches:
        inputs = (a.to(dev), None if b is None else b.to(dev))
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
            loss, _ = _loss(model, inputs, options)
        total += float(loss) * len(a)
        count += len(a)
    return total / max(count, 1)


