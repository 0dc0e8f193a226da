"""The quality-vs-compute study's engine: calibration, the held-out loss, one resumable variant run.

Time is CALIBRATED, not read off the clock while training: every variant's step (and tuning
step) is timed once, all variants interleaved in one process, and a point's time is its steps
times those step times. Training itself may then run on a busy machine, and a run may stop and
resume in another sitting: its points, written after every evaluation, do not depend on it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from qvc_fit import fit
from qvc_variants import Layout, patched, variant_spec
from safetensors.torch import load_file, save_file

from maskdit import Experiment, ExperimentSpec, evaluate_denoiser
from maskdit.core import training_flops
from maskdit.eval import Evaluator, HeldOutLoss
from maskdit.io import atomic_write, latest_checkpoint
from maskdit.losses import RepaLoss

CFG_SWEEP = (1.0, 2.0, 3.0, 4.0)  # 1 = unguided


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic: a reader (or a later sitting after a kill) sees the old file or the new one, never half."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8"))


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def machine() -> str:
    """The CPU's model name as lscpu reports it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


# ---- calibration ------------------------------------------------------------------------------
def step_intervals(spec: ExperimentSpec, dataset: Any, work_dir: Path, *, skip: int,
                   on_objectives: Callable[[dict[str, Any]], None] | None = None) -> list[float]:
    """Seconds between consecutive training steps of a throwaway run of ``spec``, leaving out the
    first ``skip`` steps (start-up, the phase switch of a tuning timing); ``on_objectives`` as :func:`fit`'s."""
    stamps: list[float] = []
    shutil.rmtree(work_dir, ignore_errors=True)
    fit(spec, work_dir, dataset=dataset, on_step=lambda: stamps.append(time.perf_counter()),
        on_objectives=on_objectives)
    shutil.rmtree(work_dir, ignore_errors=True)
    return [b - a for a, b in zip(stamps[skip:], stamps[skip + 1:])]


def timing_summary(intervals: dict[str, list[float]], *, steps: int, rounds: int) -> dict[str, Any]:
    """Median step time and spread per key, with the conditions they were timed under."""
    return {
        "seconds_per_step": {key: statistics.median(values) for key, values in intervals.items()},
        "spread": {key: [min(values), max(values)] for key, values in intervals.items()},
        "steps_per_round": steps, "rounds": rounds, "load_average": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "threads": torch.get_num_threads(),
    }


def calibrate(layout: Layout, names: list[str], dataset: Any, work_dir: Path, *, steps: int = 16, rounds: int = 3,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Median seconds per step of every variant's main and tuning step, timed in ``rounds``
    interleaved rounds (variant A, B, ..., then again), so slow drift of the machine hits all alike."""
    intervals: dict[str, list[float]] = {}
    for round_index in range(rounds):
        for name in names:
            keys = [name] + ([f"{name}/tune"] if layout.variants[name].tune else [])
            for key in keys:
                tune = key.endswith("/tune")
                spec = variant_spec(layout, name, main_steps=1 if tune else steps, tune_steps=steps if tune else 0)
                intervals.setdefault(key, []).extend(step_intervals(spec, dataset, work_dir / "calibrate", skip=3))
        log(f"  calibration round {round_index + 1}/{rounds} done")
    return timing_summary(intervals, steps=steps, rounds=rounds)


# ---- alignment: the encoder's one-off cost and the step with a warm feature cache ---------------
def alignment_terms(objectives: dict[str, Any]) -> list[RepaLoss]:
    """The distinct repa terms of a run's phase objectives."""
    found = {id(t.term): t.term for o in objectives.values() for t in getattr(o, "terms", ())
             if isinstance(t.term, RepaLoss)}
    return list(found.values())


def warm_features(objectives: dict[str, Any], dataset: Any, grid: tuple[int, int]) -> dict[str, float]:
    """Encode every training image into each repa term's feature cache, as training would on first
    sight (one image at a time); the seconds and encoder calls of the first term: the one-off
    extraction cost a point's time carries."""
    cost = {"extraction_seconds": 0.0, "encoded_images": 0}
    for index, term in enumerate(alignment_terms(objectives)):
        if term.cache is None:
            raise ValueError("the study's aligned variants cache their features (cache_features: true)")
        started = time.perf_counter()
        with torch.no_grad():
            for chunk in dataset.images.split(250):
                term.target_features(chunk, grid)
        if index == 0:
            cost = {"extraction_seconds": time.perf_counter() - started, "encoded_images": term.encoded_images}
    return cost


def alignment_cost(layout: Layout, names: list[str], dataset: Any, work_dir: Path, *, steps: int = 16,
                   rounds: int = 3, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Each aligned variant's step time next to its twin's (interleaved rounds, as ``calibrate``),
    the aligned one with its feature cache warmed first (so a step pays what it pays once every
    image has been seen), and the one-off extraction (all training images, one encoder call each)."""
    side = 32 // layout.patch_size  # the digits are 32 x 32
    grid = (side, side)
    intervals: dict[str, list[float]] = {}
    extraction: dict[str, list[float]] = {}
    encoded: dict[str, int] = {}

    def warm(name: str) -> Callable[[dict[str, Any]], None]:
        def call(objectives: dict[str, Any]) -> None:
            cost = warm_features(objectives, dataset, grid)
            extraction.setdefault(name, []).append(cost["extraction_seconds"])
            encoded[name] = cost["encoded_images"]
        return call

    for round_index in range(rounds):
        for name in names:
            spec = variant_spec(layout, name, main_steps=steps)
            intervals.setdefault(name, []).extend(step_intervals(
                spec, dataset, work_dir / "calibrate", skip=3,
                on_objectives=warm(name) if layout.variants[name].aligned else None))
        log(f"  alignment cost round {round_index + 1}/{rounds} done")
    result = timing_summary(intervals, steps=steps, rounds=rounds)
    seconds = result["seconds_per_step"]
    return {**result,
            "ratios": {name: seconds[name] / seconds[layout.variants[name].twin] for name in names
                       if layout.variants[name].aligned},
            "extraction_seconds": {name: statistics.median(values) for name, values in extraction.items()},
            "encoded_images": encoded}


# ---- one variant ------------------------------------------------------------------------------
def run_variant(layout: Layout, name: str, seed: int, *, plan: dict[str, Any], dataset: Any, heldout: HeldOutLoss,
                record_path: Path, work_dir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train one (layout, variant, seed) for ``plan['main_steps']`` steps, recording a ready model's
    held-out loss at each evaluation step, resuming from the run's checkpoint and its record.

    ``plan``: main_steps, tune_steps, eval_steps, seconds_per_step (the calibration), batch_size."""
    variant = layout.variants[name]
    main_steps, tune_steps, eval_steps = plan["main_steps"], plan["tune_steps"], plan["eval_steps"]
    interval = eval_steps[1] - eval_steps[0]
    spec = variant_spec(layout, name, main_steps=main_steps, seed=seed, eval_every=interval)
    record = read_json(record_path) or {"layout": layout.name, "variant": name, "seed": seed, "plan": plan,
                                        "spec": spec.model_dump(mode="json"), "points": [], "fid": {},
                                        "measured_train_seconds": 0.0}
    if record["plan"] != plan:
        raise ValueError(f"{record_path} was written for another plan; move it away to start this run afresh")
    done = {point["step"] for point in record["points"]}
    main_dir, ready_dir = work_dir / "main", work_dir / "ready"
    t_main = plan["seconds_per_step"][name]
    t_tune = plan["seconds_per_step"].get(f"{name}/tune", 0.0)
    batch = spec.train.batch_size
    macs_main = training_flops(spec.model, mask_ratio=variant.ratio) * batch
    macs_tune = training_flops(spec.model) * batch
    # alignment: the projector on every main step, the encoder once per distinct image (cached) before the first
    costs = [term.training_macs(spec.model, variant.ratio) for term in spec.losses.terms if term.name == "repa"]
    macs_main += sum(cost.projector_macs for cost in costs) * batch
    once_seconds = plan.get("extraction_seconds", 0.0)
    once_macs = sum(cost.encoder_macs for cost in costs) * plan.get("encoded_images", 0)
    clock = {"since": time.perf_counter(), "paused": 0.0}

    def on_point(step: int, ema_model: torch.nn.Module) -> None:
        if step not in eval_steps or step in done:
            return
        paused = time.perf_counter()
        record["measured_train_seconds"] += paused - clock["since"] - clock["paused"]
        ready = tuned(step) if variant.tune else ema_model
        loss, per_sigma = heldout(ready)
        ready_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in ready.state_dict().items()}, ready_dir / f"step-{step:06d}.safetensors")
        tune = tune_steps if variant.tune else 0
        point = {"step": step, "tune_steps": tune, "seconds": once_seconds + step * t_main + tune * t_tune,
                 "macs": once_macs + step * macs_main + tune * macs_tune, "heldout_loss": loss,
                 "heldout_per_sigma": per_sigma}
        record["points"].append(point)
        done.add(step)
        write_json(record_path, record)
        log(f"  {layout.name}/{name} s{seed} step {step}/{main_steps}: {point['seconds']:.0f} s calibrated, "
            f"{point['macs'] / 1e12:.2f} TMAC, held-out loss {loss:.4f}")
        clock["since"], clock["paused"] = time.perf_counter(), 0.0

    def tuned(step: int) -> torch.nn.Module:
        """A tuning branch from the main run's checkpoint at ``step``: ``tune_steps`` unmasked DSM steps."""
        missing = RuntimeError(f"no checkpoint of step {step} in {main_dir} to branch the tuning from")
        source = latest_checkpoint(main_dir / "checkpoints")
        if source is None:
            raise missing
        branch_spec = variant_spec(layout, name, main_steps=step, tune_steps=tune_steps, seed=seed)
        branch_dir = work_dir / "branch"
        shutil.rmtree(branch_dir, ignore_errors=True)

        def at_step(resumed: int | None, _: torch.nn.Module | None) -> None:
            if resumed != step:
                raise missing

        model = fit(branch_spec, branch_dir, dataset=dataset, resume=source, on_start=at_step)  # weights: the checkpoint's
        shutil.rmtree(branch_dir, ignore_errors=True)
        return model

    def on_start(step: int | None, ema_model: torch.nn.Module | None) -> None:
        if step is not None:
            log(f"  {layout.name}/{name} s{seed}: resumed at step {step}")
            on_point(step, ema_model)  # a point its checkpoint was written for
        elif record["points"]:
            # the checkpoint is gone (a fresh machine): start over rather than mix two trainings' points
            log(f"  {layout.name}/{name} s{seed}: no checkpoint in {main_dir}; its {len(done)} points are dropped")
            record["points"], record["measured_train_seconds"] = [], 0.0
            done.clear()

    if len(done) < len(eval_steps):
        fit(spec, main_dir, dataset=dataset, resume=True, on_start=on_start, on_evaluation=on_point)
    return record


def ready_model(layout: Layout, record: dict[str, Any], step: int, work_dir: Path) -> torch.nn.Module:
    """The ready (EMA, tuned where needed) model a run recorded at ``step``."""
    denoiser = Experiment(ExperimentSpec.model_validate(record["spec"])).denoiser()
    path = work_dir / "ready" / f"step-{step:06d}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the ready model of step {step} is gone; rerun this variant")
    denoiser.load_state_dict(load_file(path))
    return denoiser.eval()


def fid_sweep(denoiser: torch.nn.Module, spec: ExperimentSpec, evaluator: Evaluator, *, num_samples: int,
              sampler_steps: int, cfgs: tuple[float, ...] = CFG_SWEEP) -> dict[str, Any]:
    """Digits FID and class accuracy at each guidance scale (Euler, ``sampler_steps``); the best FID."""
    results = {}
    for cfg in cfgs:
        at = patched(spec.model_dump(mode="json"), {"sampler.cfg_scale": cfg, "sampler.steps": sampler_steps,
                                                    "eval.num_samples": num_samples, "eval.grid_per_class": 0})
        record = evaluate_denoiser(denoiser, Experiment(at), evaluator=evaluator)
        results[f"{cfg:g}"] = {"fid": record["fid"], "class_accuracy": record["class_accuracy"]}
    best = min(results, key=lambda key: results[key]["fid"])
    return {"by_cfg": results, "unguided_fid": results.get("1", {}).get("fid", math.nan),
            "best_fid": results[best]["fid"], "best_cfg": float(best),
            "best_class_accuracy": results[best]["class_accuracy"], "num_samples": num_samples}
