"""ExperimentSpec: the whole experiment as one validated, JSON round-trippable document.

Each section's spec lives next to the code it configures (``maskdit/<part>/specs.py``); this
module only composes them and checks what spans sections. ``spec.model_dump_json()`` is saved
next to every checkpoint and is enough to rebuild the experiment.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from maskdit.config import json_input as jsonio
from maskdit.config.errors import InputError
from maskdit.config.spec_model import Seed, SpecModel
from maskdit.core.specs import ModelSpec
from maskdit.data.specs import DataSpec, MNIST5kSpec
from maskdit.eval.specs import EvalSpec
from maskdit.losses.specs import LossesSpec
from maskdit.masking.specs import MaskingSpec, RandomMaskingSpec, masking_max_ratio, masking_path_drop
from maskdit.masking.strategies import num_kept
from maskdit.samplers.flow_specs import follow_process_grid
from maskdit.samplers.specs import HeunSamplerSpec, SamplerSpec
from maskdit.train.specs import TrainSpec

PRESET_DIR = Path(__file__).parent / "presets"


class ExperimentSpec(SpecModel):
    name: str = Field("experiment", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="run name (folder under runs/)")
    seed: Seed = Field(0, description="seed every generator of the run derives from, 0..2**32-1 (what torch's "
                                      "generators use)")
    model: ModelSpec = Field(description="network architecture (required: give a preset or the fields)")
    masking: MaskingSpec = Field(RandomMaskingSpec(), description="token masking during training")
    losses: LossesSpec = Field(LossesSpec(), description="training objective")
    sampler: SamplerSpec = Field(HeunSamplerSpec(), description="sampler for evaluation and sample grids")
    data: DataSpec = Field(MNIST5kSpec(), description="training data")
    train: TrainSpec = Field(TrainSpec(steps=1000), description="optimisation")
    eval: EvalSpec = Field(EvalSpec(), description="evaluation")

    @model_validator(mode="before")
    @classmethod
    def _grid_follows_process(cls, data: Any) -> Any:
        """A flow model's euler / heun without a schedule of their own sample on the flow's time
        grid (uniform in t from pure noise, as SiT does), not on EDM's sigma schedule; a flow model
        with no value at pure noise (eps prediction) keeps the sigma schedule."""
        section = data.get("sampler", {"name": "heun"}) if isinstance(data, dict) else None  # heun: the default
        if not isinstance(section, dict) or "schedule" in section:
            return data
        try:
            process = ModelSpec.model_validate(data.get("model")).process
        except ValueError:  # the model field reports its own errors
            return data
        followed = follow_process_grid(section, process)
        return data if followed is section else {**data, "sampler": followed}

    @field_validator("name")
    @classmethod
    def _plain_folder_name(cls, name: str) -> str:
        if name in (".", ".."):
            raise ValueError(f"{name!r} is a path component, not a run name: the run folder must be a new "
                             "folder inside --runs")
        return name

    @model_validator(mode="after")
    def _sections_agree(self) -> ExperimentSpec:
        tokens = self.model.num_tokens
        ratio = masking_max_ratio(self.masking)
        try:
            num_kept(tokens, ratio)
        except ValueError:
            raise ValueError(
                f"masking ratio up to {ratio} leaves no visible token of the model's {tokens}"
            ) from None
        self._losses_fit_process()
        self._losses_fit_routing()
        self._alignment_fits_model()
        self._path_drop_fits()
        process = self.model.process
        if math.isinf(self.sampler.sigma_max) and not getattr(process, "defined_at_pure_noise", False):
            model = (f"model.process {process.name!r} with prediction {process.prediction!r}"
                     if hasattr(process, "prediction") else f"a model.process {process.name!r} model")
            raise ValueError(f"sampler.schedule {self.sampler.schedule.name!r} starts at pure noise (sigma = inf), "
                             f"where {model} has no value: set sampler.schedule.t_max below 1 (e.g. 0.99), "
                             "or use a sigma schedule")
        needs_labels = getattr(self.sampler, "needs_labels", self.sampler.cfg_scale != 1.0)
        if self.model.num_classes == 0 and needs_labels:
            raise ValueError(
                f"sampler.cfg_scale is {self.sampler.cfg_scale} but the model is unconditional (num_classes 0); "
                "guidance needs labels: set cfg_scale to 1 (or path-drop guidance with path_drop_label 'same')"
            )
        if self.data.channels != self.model.in_channels:
            raise ValueError(
                f"data has {self.data.channels} channel(s) but model.in_channels is {self.model.in_channels}"
            )
        if self.data.resolution != self.model.input_size:
            raise ValueError(
                f"data resolution {self.data.resolution} differs from model.input_size {self.model.input_size}"
            )
        if self.model.num_classes and self.data.num_classes > self.model.num_classes:
            raise ValueError(
                f"data has {self.data.num_classes} classes but model.num_classes is {self.model.num_classes}"
            )
        return self


    def _losses_fit_process(self) -> None:
        """The training noise and the loss weighting must make sense for model.process."""
        process = self.model.process
        problem = process.noise_problem(self.losses.noise)
        if problem:
            raise ValueError(f"losses.noise {self.losses.noise.name!r} does not fit model.process {process.name!r}: "
                             f"{problem}")
        for term in self.losses.terms + tuple(t for phase in self.train.phases for t in phase.loss_terms or ()):
            if term.name != "dsm":
                continue
            if term.weighting == "edm" and process.name == "edm" and term.sigma_data != process.sigma_data:
                raise ValueError(f"the dsm loss uses sigma_data {term.sigma_data} but model.process.sigma_data is "
                                 f"{process.sigma_data}")

    def _alignment_fits_model(self) -> None:
        """A repa term reads the tokens after one of the model's encoder blocks, and the clean images
        (on latent data: the crops the folder stores, checked before the first step)."""
        for term in self.losses.terms + tuple(t for phase in self.train.phases for t in phase.loss_terms or ()):
            if term.name != "repa":
                continue
            if term.depth is not None and term.depth > self.model.depth:
                raise ValueError(f"losses repa.depth {term.depth} is deeper than model.depth {self.model.depth}: the "
                                 "term aligns the tokens after that many encoder blocks")

    def _losses_fit_routing(self) -> None:
        """A model that predicts nothing at dropped positions (no decoder, tokens never rejoin:
        DiT under a mask, MicroDiT) can only be trained on the visible ones."""
        model = self.model
        if model.decoder_depth or model.routing.rejoins:
            return
        stages = [(self.masking, self.losses.terms)] + [
            (phase.masking or self.masking, phase.loss_terms or self.losses.terms) for phase in self.train.phases
        ]
        for masking, terms in stages:
            if masking_max_ratio(masking) == 0:
                continue
            for term in terms:
                if term.name == "mae" or getattr(term, "tokens", None) == "all":
                    what = "mae" if term.name == "mae" else f"{term.name} with tokens 'all'"
                    raise ValueError(
                        f"the loss {what} needs predictions at dropped positions, but this model has no "
                        "decoder and its dropped tokens never rejoin (set model.routing.end or a decoder)"
                    )


    def _path_drop_fits(self) -> None:
        """Path drop (masking) and path-drop guidance (sampler) replace the sparse span where the
        dropped tokens rejoin: they need model.routing.end, the guidance a model trained with path
        drop, and a path-dropped sample has no visible token to average a loss over."""
        sections = [("masking", self.masking)] + [(f"train.phases.{i}.masking", phase.masking)
                                                  for i, phase in enumerate(self.train.phases) if phase.masking]
        rejoins = self.model.routing.rejoins
        for where, masking in sections:
            if masking_path_drop(masking) > 0 and not rejoins:
                raise ValueError(f"{where}.path_drop ({masking_path_drop(masking):g}) replaces the sparse span where "
                                 "the dropped tokens rejoin, but model.routing.end is not set (they never rejoin): "
                                 f"set model.routing.end, or {where}.path_drop to 0")
        stages = [(self.masking, self.losses.terms)] if not self.train.phases else [
            (phase.masking or self.masking, phase.loss_terms or self.losses.terms) for phase in self.train.phases]
        trained = any(masking_path_drop(masking) > 0 for masking, _ in stages)
        for masking, terms in stages:
            for term in terms if masking_path_drop(masking) > 0 else ():
                if getattr(term, "tokens", None) == "visible":
                    raise ValueError(f"the loss {term.name} averages over the visible tokens, which a path-dropped "
                                     "sample (masking.path_drop) has none of: set its tokens to 'all' or leave it out")
        if getattr(self.sampler, "path_drop", False):
            if not rejoins:
                raise ValueError("sampler.path_drop guides with the model's sparse path dropped where the dropped "
                                 "tokens rejoin, but model.routing.end is not set: use cfg (path_drop false)")
            if not trained:
                raise ValueError("sampler.path_drop guides with the path-dropped model, which this spec never trains: "
                                 "set masking.path_drop (SPRINT: 0.1) in the training phases")


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.json"))


def resolve_spec_path(spec: str) -> Path:
    """A path to a JSON file, or the name of a bundled preset."""
    path = Path(spec)
    if path.suffix == ".json" or path.exists() or "/" in spec:
        return path
    preset = PRESET_DIR / f"{spec}.json"
    if not preset.exists():
        raise FileNotFoundError(f"no spec file {spec!r} and no bundled preset of that name; presets: {', '.join(preset_names())}")
    return preset


def load_spec_dict(spec: str) -> dict[str, Any]:
    """Read a spec file (or bundled preset) as a JSON object, at most 1 MiB, no duplicate keys.
    Raises OSError (missing / unreadable file) or ValueError (JSONInputError and others)."""
    data = jsonio.load_file(resolve_spec_path(spec), max_bytes=jsonio.SPEC_MAX_BYTES)
    if not isinstance(data, dict):
        raise ValueError(f"a spec must be a JSON object, got {type(data).__name__}")
    return data


def load_spec(spec: str) -> ExperimentSpec:
    return ExperimentSpec.model_validate(load_spec_dict(spec))


def read_spec(spec: str, overrides: list[str] = ()) -> ExperimentSpec:
    """Read a spec file (or preset), apply ``--set`` overrides, validate: what every command does
    with a spec. Every failure is an InputError, one line per problem naming the field path."""
    try:
        data = load_spec_dict(spec)
    except jsonio.JSONInputError:
        raise
    except (OSError, ValueError) as err:
        raise InputError(f"{spec}: {err.strerror if isinstance(err, OSError) and err.strerror else err}") from None
    return validate_spec(data, overrides)


def validate_spec(data: dict[str, Any], overrides: list[str] = ()) -> ExperimentSpec:
    """A spec document with ``--set`` overrides applied, validated (InputError on any problem)."""
    updated = override_input(data, overrides)
    try:
        return ExperimentSpec.model_validate(updated)
    except ValidationError as err:
        raise InputError.from_validation(err, updated) from None


def override_input(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """:func:`apply_overrides` whose problems are InputErrors naming ``--set``."""
    try:
        return apply_overrides(data, overrides)
    except ValueError as err:
        raise InputError(f"--set: {err}") from None


def json_schema() -> dict[str, Any]:
    return ExperimentSpec.model_json_schema()


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a spec dict (value parsed as JSON, else kept as a string).

    A numeric part indexes a list (``train.phases.0.steps=8``). The result is validated like a
    file, so an override can never bypass a check. ``train.steps`` on a spec with phases is
    refused with what to set instead (the phases' steps are the run's length).
    """
    result = json.loads(json.dumps(data))  # deep copy; the input stays untouched
    for item in overrides:
        key, value = parse_override(item)
        shown = jsonio.short(item)
        node: Any = result
        *parents, leaf = key.split(".")
        for depth, part in enumerate(parents):
            where = ".".join(parents[: depth + 1])
            if isinstance(node, list):
                node = node[_index(part, node, ".".join(parents[:depth]), shown)]
                continue
            child = node.setdefault(part, {})
            if not isinstance(child, (dict, list)):
                raise ValueError(f"override {shown}: {where} is not a section")
            node = child
        if isinstance(node, list):
            node[_index(leaf, node, ".".join(parents), shown)] = value
        else:
            node[leaf] = value
        if key == "train.steps" and isinstance(result.get("train"), dict) and result["train"].get("phases"):
            phases = result["train"]["phases"]
            count = f"{len(phases)} phase" + ("s" if len(phases) != 1 else "")
            raise ValueError(f"train.steps: this spec trains in {count}, whose steps set the "
                             "length; set train.phases.<i>.steps instead (e.g. train.phases.0.steps=...)")
    return result


def parse_override(item: str) -> tuple[str, Any]:
    """``a.b.c=value`` -> ("a.b.c", value): the value parsed as JSON, else kept as a string.
    The one parser of KEY=VALUE arguments (``--set``, ``sample --arch``); raises ValueError."""
    key, sep, raw = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {jsonio.short(item)} must look like section.field=value")
    try:
        return key, jsonio.loads(raw, source="value")
    except jsonio.JSONInputError as err:
        if "nested too deeply" in str(err) or "duplicate key" in str(err):
            raise ValueError(f"override {jsonio.short(key)}: {err}") from None
        return key, raw  # not JSON: a plain string


def _index(part: str, node: list, where: str, shown: str) -> int:
    if not part.isdigit():
        raise ValueError(f"override {shown}: {where} is a list; index it with a number, e.g. 0")
    if int(part) >= len(node):
        raise ValueError(f"override {shown}: {where} has {len(node)} entries (indices 0..{len(node) - 1})")
    return int(part)
