"""benchmarks/quality_vs_compute/: the variants, the report arithmetic, a tiny resumable study, and
the report of the committed records."""

import json
import shutil

import pytest
import torch

from maskdit import Experiment, read_spec
from maskdit.data import build_dataset
from maskdit.eval import HeldOutLoss
from tests.benchmarks.scripts import BENCHMARKS, golden, load_study

RECORDS = BENCHMARKS / "quality_vs_compute" / "records"


@pytest.fixture(scope="module")
def qvc():
    return load_study("quality_vs_compute", "qvc_variants", "qvc_fit", "qvc_engine", "qvc_report",
                      "quality_vs_compute")


@pytest.fixture
def tiny(qvc, monkeypatch):
    """A 3-block, 16-wide layout with patch 8 (16 tokens): milliseconds per step."""
    setup = qvc["qvc_variants"]
    layout = setup.Layout("tiny", patch_size=8, depth=3, hidden_size=16, num_heads=2, train_seconds=1.0)
    monkeypatch.setitem(setup.LAYOUTS, "tiny", layout)
    return layout


class ZeroDenoiser(torch.nn.Module):
    def forward(self, x, sigma, labels=None):
        return torch.zeros_like(x)


def point(step, seconds, macs, loss):
    return {"step": step, "seconds": seconds, "macs": macs, "heldout_loss": loss, "tune_steps": 0}


def record(variant, seed, points, fid=None, main_steps=None, dit_step=1.0, step=1.0):
    seconds = {"dit": dit_step, variant: step}
    return {"variant": variant, "seed": seed, "points": points, "fid": fid or {}, "done": True,
            "plan": {"main_steps": main_steps or max(p["step"] for p in points), "seconds_per_step": seconds}}


def test_first_reach_interpolates_between_evaluations(qvc):
    report = qvc["qvc_report"]
    series = [point(1, 10, 100, 0.9), point(2, 20, 200, 0.5), point(3, 30, 300, 0.3)]
    assert report.first_reach(series, 0.4, "seconds") == pytest.approx(25.0)  # halfway from 0.5 to 0.3
    assert report.first_reach(series, 0.9, "macs") == 100.0
    assert report.first_reach(series, 0.1, "seconds") is None


def test_summary_fractions_are_of_dit_final_time_and_flops_per_seed(qvc):
    report = qvc["qvc_report"]
    dit0 = record("dit", 0, [point(10, 50, 1000, 0.8), point(20, 100, 2000, 0.4)],
                  fid={"20": {"best_fid": 30.0, "unguided_fid": 90.0, "best_class_accuracy": 0.9}})
    dit1 = record("dit", 1, [point(10, 50, 1000, 0.8), point(20, 100, 2000, 0.5)],
                  fid={"20": {"best_fid": 32.0, "unguided_fid": 91.0, "best_class_accuracy": 0.9}})
    fast = [record("tread", seed, [point(10, 25, 400, 0.6), point(20, 50, 800, 0.4), point(40, 100, 1600, 0.3)],
                   fid={"20": {"best_fid": 29.0, "unguided_fid": 80.0, "best_class_accuracy": 0.95},
                        "40": {"best_fid": 25.0, "unguided_fid": 70.0, "best_class_accuracy": 0.97}},
                   step=0.5) for seed in (0, 1)]
    never = record("slow", 0, [point(5, 100, 900, 0.45)], step=20.0)
    summary = report.summarize_layout([dit0, dit1, *fast, never])["variants"]
    tread = summary["tread"]
    assert tread["per_seed"]["0"]["loss_fraction_seconds"] == pytest.approx(0.5)
    assert tread["per_seed"]["1"]["loss_fraction_seconds"] == pytest.approx(0.25 + 0.25 * 0.1 / 0.2)  # loss 0.5 between
    assert tread["per_seed"]["0"]["loss_fraction_macs"] == pytest.approx(0.4)
    assert tread["per_seed"]["0"]["fid_fraction_seconds"] == pytest.approx(0.5)  # first FID point at or below 30
    assert tread["loss_fraction_seconds"]["n"] == 2 and tread["loss_fraction_seconds_every_seed"]
    assert tread["step_time_vs_dit"]["median"] == 0.5
    assert (tread["steps_vs_dit_to_dit_loss"]["min"], tread["steps_vs_dit_to_dit_loss"]["max"]) == (0.75, 1.0)
    assert summary["slow"]["loss_fraction_seconds"] is None
    assert summary["dit"]["loss_fraction_seconds"]["median"] == 1.0
    assert "not reached" in report.format_table("64", {"variants": summary})


def test_ratio_curve_compares_with_dit_at_the_same_loss(qvc):
    report = qvc["qvc_report"]
    dit = record("dit", 0, [point(10, 50, 1000, 0.8), point(20, 100, 2000, 0.4)])
    sparse = record("tread", 0, [point(10, 20, 400, 0.9), point(20, 40, 800, 0.6), point(40, 80, 1600, 0.3)])
    curve = report.ratio_curve(sparse, dit)
    assert curve[0]["time_ratio"] is None  # 0.9 is above DiT's first evaluation: not bracketed
    assert curve[1]["dit_seconds"] == pytest.approx(75.0)  # DiT gets to 0.6 halfway from 50 s to 100 s
    assert curve[1]["time_ratio"] == pytest.approx(40 / 75) and curve[1]["steps_ratio"] == pytest.approx(20 / 15)
    assert curve[2]["time_ratio"] is None  # below DiT's final loss: DiT never got there
    assert "0.53 (1.33)" in report.format_ratio_curves(report.summarize_layout([dit, sparse]))


def test_retime_recomputes_point_times_from_another_calibration(qvc):
    report = qvc["qvc_report"]
    tuned = record("maskdit", 0, [{**point(10, 5, 100, 0.5), "tune_steps": 2}])
    (out,) = report.retime([tuned], {"dit": 3.0, "maskdit": 2.0, "maskdit/tune": 4.0, "other": 9.0})
    assert out["points"][0]["seconds"] == 10 * 2.0 + 2 * 4.0
    assert out["plan"]["seconds_per_step"] == {"dit": 3.0, "maskdit": 2.0, "maskdit/tune": 4.0}
    assert tuned["points"][0]["seconds"] == 5  # the input is left as it was


def test_two_best_ranks_by_reach_then_by_pace_at_the_end(qvc, tmp_path):
    dit = record("dit", 0, [point(10, 50, 1000, 0.8), point(20, 100, 2000, 0.4)])
    runs = {  # none but 'reaches' gets to 0.4; at the end: 'close' is at DiT's 80 s level at 90 s,
        "reaches": record("reaches", 0, [point(10, 40, 1, 0.7), point(20, 90, 1, 0.4)]),
        "close": record("close", 0, [point(10, 40, 1, 0.7), point(20, 90, 1, 0.5)]),  # 90 / 87.5
        "far": record("far", 0, [point(10, 40, 1, 0.7), point(20, 90, 1, 0.6)]),  # 90 / 75
        "aaa": record("aaa", 0, [point(10, 40, 1, 0.9), point(20, 90, 1, 0.85)]),  # never bracketed
    }
    (tmp_path / "64").mkdir()
    for name, run in {"dit": dit, **runs}.items():
        (tmp_path / "64" / f"{name}-s0.json").write_text(json.dumps(run))
    assert qvc["quality_vs_compute"].two_best(tmp_path, "64") == ["reaches", "close"]


def test_the_report_waits_for_dit(qvc):
    report = qvc["qvc_report"]
    unfinished = record("dit", 0, [point(10, 50, 1000, 0.8)], main_steps=20)
    assert report.summarize_layout([unfinished])["variants"] == {}


def test_variant_specs_differ_only_where_the_recipe_says(qvc):
    setup = qvc["qvc_variants"]
    layout = setup.LAYOUTS["64"]
    specs = {name: setup.variant_spec(layout, name, main_steps=100) for name in layout.variants}
    dit = specs["dit"]
    for name, spec in specs.items():
        assert spec.train.model_dump(exclude={"phases"}) == dit.train.model_dump(exclude={"phases"}), name
        for field in ("depth", "hidden_size", "num_heads", "patch_size", "label_embedder"):
            assert getattr(spec.model, field) == getattr(dit.model, field), (name, field)
        twin = layout.variants[name].twin
        if layout.variants[name].aligned:  # the twin on its objective with a repa term added, nothing else
            plain = specs[name.removesuffix("-random").removesuffix("-repa")]
            assert spec.model == plain.model and spec.masking == plain.masking and spec.sampler == plain.sampler, name
            assert spec.losses.noise == plain.losses.noise, name
            assert spec.losses.terms[:-1] == plain.losses.terms, name
            repa = spec.losses.terms[-1]
            assert (repa.name, repa.encoder.name, repa.weight, repa.depth, repa.cache_features) == \
                ("repa", "digits_ssl", 0.5, None, True), name
            assert repa.encoder.weights == ("random" if name.endswith("-random") else "pretrained"), name
            continue
        if twin is None:
            assert spec.losses.noise == dit.losses.noise and spec.sampler == dit.sampler, name
            assert spec.model.process == dit.model.process, name
            continue
        # a twin variant is its EDM variant with the objective changed: process, time distribution,
        # weighting and time grid for flow matching; the noise levels alone for the EDM control
        edm = specs[twin]
        assert spec.model.model_dump(exclude={"process"}) == edm.model.model_dump(exclude={"process"}), name
        assert [t.model_dump(exclude={"weighting"}) for t in spec.losses.terms] == \
            [t.model_dump(exclude={"weighting"}) for t in edm.losses.terms], name
        assert spec.sampler.model_dump(exclude={"schedule"}) == edm.sampler.model_dump(exclude={"schedule"}), name
        assert spec.masking == edm.masking and spec.losses.noise != edm.losses.noise, name
        if name.endswith("-edm-ln"):
            assert spec.model.process == edm.model.process and spec.sampler == edm.sampler, name
            assert (spec.losses.noise.p_mean, spec.losses.noise.p_std) == (0.0, 1.0), name
            continue
        assert spec.model.process.name == "flow" and spec.losses.noise.name in ("uniform_t", "logit_normal_t"), name
        assert {t.weighting for t in spec.losses.terms if t.name == "dsm"} == {"v"}, name
        assert spec.sampler.schedule.name == "uniform_t", name
    assert {name for name in specs if layout.variants[name].twin and not layout.variants[name].aligned} == {
        f"{base}-{key}" for base in ("dit", "tread-0.5") for key in ("fm-u", "fm-ln", "edm-ln")}
    assert {name for name in specs if layout.variants[name].aligned} == {
        "dit-edm-ln-repa", "tread-0.5-edm-ln-repa", "dit-edm-ln-repa-random", "dit-fm-ln-repa"}
    assert dit.model.routing == specs["maskdit-0.5"].model.routing and specs["maskdit-0.5"].model.decoder_depth == 2
    assert specs["tread-0.5"].model.routing.rejoins and specs["tread-0.5"].model.routing.fill == "exit"
    assert specs["sprint-0.75"].model.routing.fuse == "concat"
    assert specs["deferred-0.75"].model.routing.start == 2 and not specs["deferred-0.75"].model.routing.rejoins
    assert specs["deferred-0.75"].masking.ratio == 0.75
    assert [t.name for t in specs["maskdit-0.25"].losses.terms] == ["dsm", "mae"]
    tuned = setup.variant_spec(layout, "sprint-0.75", main_steps=100, tune_steps=8)
    assert [p.steps for p in tuned.train.phases] == [100, 8] and tuned.train.phases[1].masking.name == "none"
    assert setup.LAYOUTS["256"].tokens == 256


def test_the_small_layout_is_make_demos_dit_with_its_ema_and_sampler(qvc):
    setup = qvc["qvc_variants"]
    layout = setup.LAYOUTS["64s"]
    specs = {name: setup.variant_spec(layout, name, main_steps=100) for name in layout.variants}
    dit = specs["dit"]
    assert (dit.model.depth, dit.model.hidden_size, dit.model.num_heads, layout.tokens) == (4, 96, 3, 64)
    assert dit.train.ema.decay == 0.98 and tuple(dit.sampler.cfg_interval) == (0.1, 8.0) and dit.sampler.s_churn == 4
    routing = specs["tread-0.5"].model.routing
    assert (routing.start, routing.end, routing.fill) == (1, 3, "exit")  # the first and last block dense
    assert specs["deferred-0.5"].model.routing.start == 1  # a 1-block patch-mixer of 4, as 2 of 6
    assert specs["maskdit-0.5"].model.decoder_hidden_size == 48


def test_the_committed_records_are_what_variant_spec_builds_today(qvc):
    """A record's spec is what a resumed or re-run variant trains: the setup must still build it."""
    setup = qvc["qvc_variants"]

    def without_later_fields(tree):  # fields added to the spec after a record was written (default None)
        if isinstance(tree, dict):
            return {k: without_later_fields(v) for k, v in tree.items() if k not in ("lr_decay", "metrics_during_training")}
        return [without_later_fields(v) for v in tree] if isinstance(tree, list) else tree

    paths = sorted(RECORDS.glob("*/*-s*.json"))
    assert len(paths) >= 10
    for path in paths:
        record = json.loads(path.read_text())
        plan = record["plan"]
        spec = setup.variant_spec(setup.LAYOUTS[record["layout"]], record["variant"], main_steps=plan["main_steps"],
                                  seed=record["seed"], eval_every=plan["eval_steps"][1] - plan["eval_steps"][0])
        # the record's spec read back as today's spec reads it (older fields folded in, e.g. model.precond)
        saved = type(spec).model_validate(record["spec"]).model_dump(mode="json")
        assert without_later_fields(spec.model_dump(mode="json")) == without_later_fields(saved), path


def test_plan_sizes_runs_by_calibrated_step_time(qvc):
    cli, setup = qvc["quality_vs_compute"], qvc["qvc_variants"]
    calibration = {"seconds_per_step": {"dit": 0.25, "maskdit-0.5": 0.125, "maskdit-0.5/tune": 0.3}}
    plan = cli.make_plan(setup.LAYOUTS["64"], "maskdit-0.5", calibration, 100.0)
    assert plan["main_steps"] == 800 and plan["tune_steps"] == 48
    assert plan["eval_steps"] == [300, 400, 500, 600, 700, 800]
    assert plan["seconds_per_step"] == calibration["seconds_per_step"]
    assert cli.make_plan(setup.LAYOUTS["64"], "dit", calibration, 100.0)["tune_steps"] == 0


def test_an_aligned_plan_scales_its_twins_step_and_pays_the_extraction_first(qvc):
    cli, setup = qvc["quality_vs_compute"], qvc["qvc_variants"]
    layout = setup.LAYOUTS["64"]
    calibration = {"seconds_per_step": {"dit": 0.25, "tread-0.5": 0.125}}
    with pytest.raises(ValueError, match="repa-cost"):
        cli.make_plan(layout, "dit-edm-ln-repa", calibration, 100.0)
    cost = {"ratios": {"dit-edm-ln-repa": 1.25}, "extraction_seconds": {"dit-edm-ln-repa": 20.0},
            "encoded_images": {"dit-edm-ln-repa": 4000}}
    plan = cli.make_plan(layout, "dit-edm-ln-repa", calibration, 100.0, cost)
    assert plan["seconds_per_step"] == {"dit-edm-ln-repa": 0.3125}  # DiT's step x 1.25
    assert plan["main_steps"] == 256  # (100 s - 20 s of extraction) / 0.3125 s
    assert (plan["extraction_seconds"], plan["encoded_images"]) == (20.0, 4000)
    # the flow-matching sibling pays the cost measured for DiT + REPA on edm-ln (same network and term)
    flow = cli.make_plan(layout, "dit-fm-ln-repa", calibration, 100.0, cost)
    assert flow == {**plan, "seconds_per_step": {"dit-fm-ln-repa": 0.3125}}
    # a variant without alignment plans as before: no cost file read, no new keys
    assert cli.make_plan(layout, "tread-0.5-edm-ln", calibration, 100.0, cost) == \
        cli.make_plan(layout, "tread-0.5-edm-ln", calibration, 100.0)
    assert set(cli.make_plan(layout, "dit-edm-ln", calibration, 100.0)) == {
        "main_steps", "tune_steps", "eval_steps", "seconds_per_step", "train_seconds"}


def test_variants_on_lognormal_noise_are_measured_against_dit_on_it(qvc):
    cli, report = qvc["quality_vs_compute"], qvc["qvc_report"]
    assert [cli.baseline_of(n) for n in ("dit", "tread-0.5", "dit-fm-ln", "dit-edm-ln")] == ["dit"] * 4
    assert {cli.baseline_of(n) for n in ("tread-0.5-edm-ln", "dit-edm-ln-repa", "dit-edm-ln-repa-random")} == \
        {"dit-edm-ln"}
    base = record("dit-edm-ln", 0, [point(10, 50, 1000, 0.8), point(20, 100, 2000, 0.4)])
    base["plan"]["seconds_per_step"] = {"dit-edm-ln": 5.0}  # a twin's plan names its own step time only
    aligned = record("dit-edm-ln-repa", 0, [point(8, 40, 800, 0.6), point(16, 80, 1600, 0.3)], step=6.0)
    rows = report.summarize_layout([base, aligned], base="dit-edm-ln")["variants"]
    assert rows["dit-edm-ln-repa"]["step_time_vs_dit"]["median"] == pytest.approx(1.2)
    # DiT-edm-ln's final 0.4 is reached two thirds of the way from 0.6 (40 s) to 0.3 (80 s): 66.7 s of its 100 s
    assert rows["dit-edm-ln-repa"]["loss_fraction_seconds"]["median"] == pytest.approx(2 / 3)
    assert report.summarize_layout([aligned], base="dit-edm-ln")["variants"] == {}


def test_warming_the_feature_cache_encodes_each_image_once(qvc, tiny):
    engine, setup = qvc["qvc_engine"], qvc["qvc_variants"]
    spec = setup.variant_spec(tiny, "dit-edm-ln-repa", main_steps=8)
    objectives = Experiment(spec).objectives()

    class Images:
        images = build_dataset(spec.data).images[:12]

    cost = engine.warm_features(objectives, Images, (4, 4))
    assert cost["encoded_images"] == 12 and cost["extraction_seconds"] > 0
    (term,) = engine.alignment_terms(objectives)
    assert len(term.cache) == 12
    again = engine.warm_features(objectives, Images, (4, 4))
    assert term.encoded_images == 12 and again["encoded_images"] == 12  # all hits the second time
    plain = Experiment(setup.variant_spec(tiny, "dit-edm-ln", main_steps=8)).objectives()
    assert engine.warm_features(plain, Images, (4, 4)) == {"extraction_seconds": 0.0, "encoded_images": 0}


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_record(qvc, tiny, tmp_path):
    train, setup = qvc["qvc_engine"], qvc["qvc_variants"]
    spec = setup.variant_spec(tiny, "maskdit-0.5", main_steps=8)
    dataset = build_dataset(spec.data)
    heldout = HeldOutLoss(spec, grid_size=2, limit=50)
    plan = {"main_steps": 16, "tune_steps": 2, "eval_steps": [4, 8, 12, 16],
            "seconds_per_step": {"dit": 0.5, "maskdit-0.5": 0.25, "maskdit-0.5/tune": 1.0}, "train_seconds": 1.0}

    def run(name, log=lambda line: None):
        return train.run_variant(tiny, "maskdit-0.5", 0, plan=plan, dataset=dataset, heldout=heldout,
                                 record_path=tmp_path / f"{name}.json", work_dir=tmp_path / name, log=log)

    whole = run("whole")
    calls = []

    def crash(line):
        calls.append(line)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after the third evaluation was recorded

    with pytest.raises(KeyboardInterrupt):
        run("killed", log=crash)
    assert len(json.loads((tmp_path / "killed.json").read_text())["points"]) == 3
    resumed = run("killed")
    assert [p["step"] for p in resumed["points"]] == plan["eval_steps"]
    for a, b in zip(whole["points"], resumed["points"]):
        assert a["heldout_loss"] == b["heldout_loss"] and a["seconds"] == b["seconds"] and a["macs"] == b["macs"]
    first = whole["points"][0]
    assert first["seconds"] == 4 * 0.25 + 2 * 1.0  # calibrated: main steps + the tuning branch
    # on a fresh machine (checkpoints gone) the run starts over instead of mixing two trainings
    shutil.rmtree(tmp_path / "killed")
    (tmp_path / "killed.json").write_text(json.dumps({**resumed, "points": resumed["points"][:2]}))
    again = run("killed")
    assert [p["heldout_loss"] for p in again["points"]] == [p["heldout_loss"] for p in whole["points"]]
    with pytest.raises(ValueError, match="another plan"):
        train.run_variant(tiny, "maskdit-0.5", 0, plan={**plan, "tune_steps": 3}, dataset=dataset, heldout=heldout,
                          record_path=tmp_path / "whole.json", work_dir=tmp_path / "whole")


@pytest.mark.slow
def test_tiny_study_end_to_end(qvc, tiny, tmp_path, capsys):
    cli = qvc["quality_vs_compute"]
    out = tmp_path / "out"
    args = ["--layout", "tiny", "--out-dir", str(out), "--work-dir", str(tmp_path / "work"),
            "--variants", "dit", "sprint-0.75", "--train-seconds", "0.02", "--num-samples", "16", "--heldout-images",
            "50", "--sampler-steps", "1", "--calibration-steps", "5", "--calibration-rounds", "1", "--cfgs", "1", "2"]
    assert cli.main(["run", *args]) == 0
    calibration = json.loads((out / "tiny" / "calibration.json").read_text())
    assert {"dit", "sprint-0.75", "sprint-0.75/tune", "tread-0.5"} <= set(calibration["seconds_per_step"])
    for name in ("dit", "sprint-0.75"):
        result = json.loads((out / "tiny" / f"{name}-s0.json").read_text())
        plan = result["plan"]
        assert result["done"] and [p["step"] for p in result["points"]] == plan["eval_steps"]
        assert all(p["heldout_loss"] > 0 for p in result["points"])
        final = str(plan["main_steps"])
        assert final in result["fid"] and set(result["fid"][final]["by_cfg"]) == {"1", "2"}
        tune = plan["tune_steps"]
        assert (tune > 0) == (name == "sprint-0.75")
        t = plan["seconds_per_step"]
        step = result["points"][0]["step"]
        assert result["points"][0]["seconds"] == pytest.approx(step * t[name] + tune * t.get(f"{name}/tune", 0))
    assert (out / "summary.json").exists() and (out / "quality_vs_compute.png").stat().st_size > 0
    assert "loss: time" in capsys.readouterr().out
    # a second run finds everything done and only reports
    assert cli.main(["run", *args]) == 0


def test_unknown_variant_is_refused(qvc):
    with pytest.raises(SystemExit):
        qvc["quality_vs_compute"].main(["run", "--variants", "dit", "nonsense"])


def test_heldout_loss_is_the_weighted_edm_loss_on_a_fixed_grid(qvc):
    setup = qvc["qvc_variants"]
    spec = setup.variant_spec(setup.LAYOUTS["64"], "dit", main_steps=8)
    heldout = HeldOutLoss(spec, grid_size=4)
    noise = spec.losses.noise
    assert heldout.sigmas[0] < torch.exp(torch.tensor(noise.p_mean)) < heldout.sigmas[-1]
    mean, per_sigma = heldout(ZeroDenoiser())
    expected = [(s**2 + 0.25) / (s * 0.5) ** 2 * float(heldout.images.square().mean()) for s in heldout.sigmas]
    assert per_sigma == pytest.approx(expected, rel=1e-5) and mean == pytest.approx(sum(expected) / 4, rel=1e-5)


def test_report_reproduces_the_committed_tables_and_summary(qvc, tmp_path, capsys):
    """Every committed record still loads; the report prints today's tables and rewrites summary.json
    as committed (its machine line aside, which names the machine the report ran on)."""
    out = tmp_path / "records"
    shutil.copytree(RECORDS, out)
    assert qvc["quality_vs_compute"].main(["report", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == golden("quality_vs_compute") + f"wrote {out / 'summary.json'} and {out / 'quality_vs_compute.png'}\n"
    committed = json.loads((RECORDS / "summary.json").read_text())
    assert json.loads((out / "summary.json").read_text())["summary"] == committed["summary"]


def test_a_variant_is_the_base_preset_with_a_json_patch(qvc):
    """The one dialect: the patch, rendered as --set arguments, is what the CLI would apply."""
    setup = qvc["qvc_variants"]
    patch = setup.variant_patch(setup.LAYOUTS["64s"], "tread-0.5", main_steps=40, tune_steps=0, seed=2, eval_every=10)
    assert patch["model"]["routing"] == {"start": 1, "end": 3, "fill": "exit"} and patch["train.sample_every"] == 10
    args = setup.overrides(patch)
    assert 'train.ema={"decay": 0.98, "warmup": true}' in args
    spec = read_spec(setup.BASE_PRESET, args)
    assert spec == setup.variant_spec(setup.LAYOUTS["64s"], "tread-0.5", main_steps=40, seed=2, eval_every=10)
    assert spec.seed == 2 and [p.steps for p in spec.train.phases] == [40]
