"""The table ``--dry-run`` prints: what the spec builds, as (label, value) rows."""

from __future__ import annotations

import torch

from maskdit.app.experiment import Experiment
from maskdit.core.describe import model_rows
from maskdit.core.flops import flops_per_forward, sampling_flops, training_flops
from maskdit.losses import build_noise
from maskdit.masking.expected import RatioEstimate, estimate_ratio
from maskdit.masking.grouped import GroupedMask
from maskdit.masking.path_drop import PathDrop
from maskdit.masking.specs import masking_max_ratio, masking_path_drop
from maskdit.masking.strategies import num_kept


def summarize(experiment: Experiment) -> list[tuple[str, str]]:
    """Build the experiment's masking and sampler (the parts that are cheap) and describe them all."""
    spec = experiment.spec
    model = spec.model
    tokens = model.num_tokens
    rows = [
        ("experiment", spec.name),
        ("model", _describe_model(model)),
        ("process", _describe_process(model.process)),
        ("input", f"{model.in_channels}x{model.input_size}x{model.input_size}, patch {model.patch_size}, "
                  f"{model.grid_size}x{model.grid_size} = {tokens} tokens"),
        ("classes", "unconditional" if model.num_classes == 0 else f"{model.num_classes} ({model.label_embedder} embedder)"),
    ]
    strategy = experiment.masking()
    ratio = masking_max_ratio(spec.masking)
    path_drop = masking_path_drop(spec.masking)
    generator = torch.Generator().manual_seed(spec.seed)
    mask = strategy(2, (model.grid_size, model.grid_size), sigma=torch.ones(2), step=0, generator=generator)
    # the ratio of the samples that keep their path; path drop is quoted on its own row
    estimate = _estimate(experiment, strategy.strategy if isinstance(strategy, PathDrop) else strategy, ratio)
    varies = "" if estimate is None else (f" (r {estimate.low:g}..{ratio:g}, expected {estimate.mean:.3f}: the mean "
                                          f"over {estimate.samples} training noise levels and steps, seed "
                                          f"{estimate.seed})")
    dropped = f", path drop {path_drop:g}" if path_drop else ""
    rows.append(("masking", f"{spec.masking.name}: up to r = {ratio:g}{varies}, encoder sees >= "
                            f"{num_kept(tokens, ratio)} of {tokens} tokens{dropped} (step 0 draw: {_kept(mask)})"))
    # compute is quoted at the expected ratio; a ratio that varies also gets the range of its bounds
    at_ratio = ratio if estimate is None else round(estimate.mean, 3)
    model_at = model_rows(model, mask_ratio=at_ratio)
    if estimate is not None:
        cheapest, dearest = training_flops(model, mask_ratio=ratio), training_flops(model, mask_ratio=estimate.low)
        model_at.insert(2, ("train FLOPs range", f"{cheapest / 1e9:.3g} G (r = {ratio:g}) to {dearest / 1e9:.3g} G "
                                                 f"(r = {estimate.low:g}) MACs/sample/step, the schedule's bounds"))
    if path_drop:
        model_at.insert(2, ("path drop", _describe_path_drop(model, path_drop, at_ratio)))
    if getattr(spec.sampler, "path_drop", False):
        model_at = [(label, _path_drop_sampling(model) if label == "sample FLOPs" else value)
                    for label, value in model_at]
    after_classes = [label for label, _ in rows].index("classes") + 1
    rows[after_classes:after_classes] = model_at
    terms = " + ".join(f"{term.weight:g}*{term.name}" + (f" ({term.weighting} weighting)"
                                                          if getattr(term, "weighting", "edm") != "edm" else "")
                       for term in spec.losses.terms)
    rows.append(("loss", f"{terms}, sigma ~ {spec.losses.noise.name}, label dropout {spec.losses.label_dropout:g}"))
    rows += [("alignment", _describe_alignment(spec, term, ratio)) for term in spec.losses.terms if term.name == "repa"]
    sampler = spec.sampler
    rows.append(("sampler", _describe_sampler(sampler, experiment.sampler.num_evaluations)))
    rows.append(("data", f"{spec.data.describe}, {spec.data.channels}x{spec.data.resolution}^2"))
    train = spec.train
    phases = ", ".join(f"{p.name} {p.steps}" + (f" {_describe_decay(p.lr_decay)}" if p.lr_decay else "")
                       for p in train.phases) or "one phase"
    decay = f" ({_describe_decay(train.lr_decay)} in each phase)" if train.lr_decay is not None else ""
    rows.append(("train", f"{train.total_steps} steps ({phases}) x batch {train.batch_size}, lr {train.lr:g}{decay}, "
                          f"EMA {train.ema.decay:g}, {train.precision} on {train.device}"))
    rows.append(("eval", f"{spec.eval.num_samples} samples: {', '.join(spec.eval.metrics) or 'none'}"))
    return rows


def _estimate(experiment: Experiment, strategy, max_ratio: float) -> RatioEstimate | None:
    """The expected ratio of a schedule that varies (None for a constant one, or a strategy
    that cannot say its counts), with ``low`` set to the schedule's lower bound."""
    schedule = getattr(strategy, "schedule", None)
    low = getattr(schedule, "min_ratio", None)
    if not isinstance(low, float) or low >= max_ratio or not callable(getattr(strategy, "kept_counts", None)):
        return None
    spec = experiment.spec
    micro = spec.train.batch_size // spec.train.grad_accumulation  # what one objective call groups
    estimate = estimate_ratio(strategy, spec.model.num_tokens, noise=build_noise(spec.losses.noise),
                              batch_size=micro, total_steps=spec.train.total_steps)
    return RatioEstimate(mean=estimate.mean, low=low, high=max_ratio, samples=estimate.samples, seed=estimate.seed)


def _describe_alignment(spec, term, ratio: float) -> str:
    """A repa term's place in the training FLOP ledger: its projector (forward and backward on the
    tokens present at the aligned block) and the frozen encoder's forward; sampling runs neither."""
    model = spec.model
    depth = term.aligned_depth(model.depth)
    present, projector, encoder, width = term.training_macs(model, ratio)
    widths = f"{model.hidden_size}-{term.projector_dim}-{term.projector_dim}-{width}"
    return (f"repa {term.weight:g} on the tokens after block {depth} of {model.depth} ({present} of {model.num_tokens} "
            f"present), projector {widths} {projector / 1e6:.3g} M MACs/sample/step + {term.encoder.name} encoder "
            f"forward {encoder / 1e6:.3g} M MACs " + ("per distinct image (cached)" if term.cache_features else
                                                        "per sample and step") + (f", off from step {term.until_step}" if term.until_step is not None
                                                          else "") + "; neither runs while sampling"
            + ("; the encoder reads the crops the latent folder keeps (encode --keep-images)"
               if spec.data.name == "latents" else ""))


def _kept(mask) -> str:
    if isinstance(mask, GroupedMask):
        return ", ".join(str(group.num_kept) for group in mask.groups)
    return str(mask.num_kept)


def _describe_decay(decay) -> str:
    return f"{decay.shape} lr decay to {decay.final:g}x over the last {decay.fraction:.0%}"


def _describe_model(model) -> str:
    encoder = f"encoder {model.depth}x{model.hidden_size} ({model.num_heads} heads)"
    decoder = (f"decoder {model.decoder_depth}x{model.decoder_hidden_size} ({model.decoder_num_heads} heads)"
               if model.decoder_depth else "no decoder")
    name = f"{model.preset}: " if model.preset else ""
    return f"{name}{encoder}, {decoder}, {_describe_routing(model)}"


def _describe_process(process) -> str:
    details = [f"network predicts {process.parameterisation}"]
    if process.network_time:
        details.append(f"fed {process.network_time}")
    return f"{process.name}: " + ", ".join(details)


def _describe_routing(model) -> str:
    routing, sparse_blocks = model.routing, model.sparse_blocks
    end = sparse_blocks.stop
    span = f"blocks {routing.start}-{end - 1} on the kept tokens"
    if not routing.rejoins:
        return f"{span}, dropped tokens never rejoin (loss on {routing.loss_tokens} tokens)"
    fill = f"their block-{routing.start} input" if routing.fill == "exit" else "a mask token"
    fused = ", concat-fused with the dense-shallow output" if routing.fuse == "concat" else ""
    return f"{span}, dropped tokens rejoin before block {end} as {fill}{fused} (loss on all tokens)"


def _describe_path_drop(model, probability: float, ratio: float) -> str:
    """Path drop's share of the training compute: a dropped sample skips the sparse span."""
    routing = model.routing
    plain, expected = training_flops(model, mask_ratio=ratio), training_flops(model, mask_ratio=ratio,
                                                                               path_drop=probability)
    return (f"p = {probability:g}: a dropped sample keeps no token, skips blocks {routing.start}-{routing.end - 1} "
            f"and rejoins as the fill; expected {expected / 1e9:.3g} G MACs/sample/step at r = {ratio:g} "
            f"({expected / plain:.2f}x of {plain / 1e9:.3g} G without path drop)")


def _path_drop_sampling(model) -> str:
    """Per network evaluation: one forward; path-drop guidance's against cfg's."""
    full, weak = flops_per_forward(model), flops_per_forward(model, path_dropped=True)
    guided, cfg = sampling_flops(model, guidance=True, path_drop=True), sampling_flops(model, guidance=True)
    return (f"{full / 1e9:.3g} G MACs/sample per network evaluation; {guided / 1e9:.3g} G with path-drop guidance "
            f"(full {full / 1e9:.3g} G + path-dropped {weak / 1e9:.3g} G) vs {cfg / 1e9:.3g} G with cfg's two full "
            f"passes ({guided / cfg:.2f}x)")


def _describe_sampler(sampler, evaluations: int | None) -> str:
    guidance = f"cfg {sampler.cfg_scale:g}"
    if getattr(sampler, "path_drop", False) and sampler.cfg_scale != 1:
        guidance = f"path-drop guidance {sampler.cfg_scale:g} (weak branch: {sampler.path_drop_label} label)"
    if sampler.cfg_scale != 1 and sampler.cfg_interval is not None:
        guidance += f" for sigma in [{sampler.cfg_interval[0]:g}, {sampler.cfg_interval[1]:g}]"
    if sampler.cfg_scale != 1 and getattr(sampler, "cfg_interval_t", None) is not None:
        guidance += f" for flow time t in [{sampler.cfg_interval_t[0]:g}, {sampler.cfg_interval_t[1]:g}] (1 = noise)"
    if sampler.cfg_scale != 1 and sampler.cfg_channels is not None:
        guidance += f" on {sampler.cfg_channels} channel(s)"
    calls = "adaptive: denoiser calls counted while sampling" if evaluations is None else f"{evaluations} denoiser calls"
    return (f"{sampler.name}, {sampler.steps} steps ({calls}), "
            f"{sampler.schedule.name} sigma {sampler.sigma_min:g}..{sampler.sigma_max:g}, {guidance}")


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)
