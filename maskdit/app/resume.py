"""What ``build --resume`` continues, and whether the spec it is given agrees with the run's.

A run folder given by its path continues in place with its own spec.json (plus any ``--set``); a
spec file continues ``--runs/<its name>``, which must be the folder the file lies in when it is a
run's spec.json (a copied or renamed folder would otherwise silently continue the original run).
A resumed spec may differ from the run's only where this command line asks for it with ``--set``
(``--set train.phases.0.steps=6000`` extends a run); any other difference looks like a forgotten
``--set`` or an edited file and is refused with the fields listed. The model never changes: its
weights fix it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from maskdit.app.cli import shell_command
from maskdit.config.errors import escaped
from maskdit.app.experiment_spec import ExperimentSpec, load_spec_dict, validate_spec
from maskdit.config import json_input as jsonio
from maskdit.config.errors import CheckpointError, InputError
from maskdit.io.checkpoint import latest_checkpoint, read_state

SPEC_FILE = "spec.json"
SHOWN_DIFFERENCES = 20  # a spec swapped for another one differs everywhere: list this many, count the rest
_ABSENT = object()  # a field one side has and the other does not (compared by identity only)


def resume_command(run_dir: Path, overrides: Sequence[str] = (), plugins: Sequence[str] = ()) -> str:
    """The shell command that continues ``run_dir`` in place, every word quoted."""
    words = ["python", "-m", "maskdit.build", str(run_dir), "--resume"]
    for override in overrides:
        words += ["--set", override]
    for module in plugins:
        words += ["--plugin", module]
    return shell_command(words)


def is_run_folder(path: Path) -> bool:
    """A folder that a build wrote: its spec.json or its checkpoints/."""
    return path.is_dir() and ((path / SPEC_FILE).is_file() or (path / "checkpoints").is_dir())


def folder_spec(folder: Path, overrides: Sequence[str]) -> tuple[ExperimentSpec, str | None]:
    """The spec that continues run folder ``folder`` in place: its spec.json with ``overrides``,
    and a note to print when the spec names another run (the folder was copied or renamed). Such
    a spec takes the folder's name when that is a valid run name, so the folder is the run's own
    from then on. InputError for a folder without a readable, valid spec.json."""
    file = folder / SPEC_FILE
    if not file.is_file():
        raise InputError(f"{folder}: a folder without {SPEC_FILE}: give a spec file, or a run folder a build wrote")
    if "name" in set_fields(overrides):
        raise InputError(f"--set name: {folder} continues in place under its own name; drop --set name")
    try:
        data = load_spec_dict(str(file))
    except jsonio.JSONInputError:
        raise
    except (OSError, ValueError) as err:
        raise InputError(f"{file}: {err.strerror if isinstance(err, OSError) and err.strerror else err}") from None
    recorded = data.get("name")
    if recorded == folder.name:
        return validate_spec(data, overrides), None
    # repr: escapes in the recorded name reach the terminal as text
    copied = f"note: {folder}'s spec names the run {jsonio.short(recorded)} (a copied or renamed run folder)"
    try:  # the folder's name is not always a valid run name (a space, say): then the spec keeps its own
        spec = validate_spec({**data, "name": folder.name}, overrides)
        return spec, f"{copied}; continuing it in place, renamed to {folder.name!r}"
    except InputError:
        spec = validate_spec(data, overrides)
        return spec, f"{copied}; continuing it in place under that name ({folder.name!r} is no valid run name)"


def set_fields(overrides: Sequence[str]) -> list[str]:
    """The field paths ``--set`` overrides name (malformed ones are reported when they are applied)."""
    return [item.partition("=")[0] for item in overrides]

def check_spec_file_home(spec_path: str, run_dir: Path, runs: Path, overrides: Sequence[str],
                         plugins: Sequence[str]) -> None:
    """With ``--resume``, a run folder's spec.json must continue that folder: refuse (saying how to
    continue the folder in place) when its name and ``runs`` point at another one."""
    path = Path(spec_path)
    home = path.parent
    if path.name != SPEC_FILE or not (home / "checkpoints").is_dir() or same_folder(home, run_dir):
        return
    how = f"to continue {home} in place: {resume_command(home, overrides, plugins)}"
    if run_dir.name != home.name:
        raise InputError(f"{spec_path}: the spec of run folder {home}, but it names the run "
                         f"{run_dir.name!r}, so --resume would continue {run_dir} "
                         f"(was {home} copied or renamed?); {how}")
    raise InputError(f"{spec_path}: the spec of run folder {home}, but with --runs {runs} --resume would "
                     f"continue {run_dir}; {how}")


def same_folder(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def run_spec(run_dir: Path) -> dict[str, Any] | None:
    """The spec ``run_dir`` was last started with, as JSON (validated and dumped when it still
    validates, so defaults added since compare equal): its spec.json, else its newest checkpoint's;
    None when it has neither (a fresh run, or state a resume will pass over)."""
    file = run_dir / SPEC_FILE
    data: Any = None
    if file.is_file():
        try:
            data = jsonio.load_file(file, max_bytes=jsonio.SPEC_MAX_BYTES)
        except OSError as err:
            raise InputError(f"{file}: {err.strerror or err}") from None
    else:
        newest = latest_checkpoint(run_dir / "checkpoints")
        try:
            data = read_state(newest).get("spec") if newest is not None else None
        except CheckpointError:
            return None  # the resume passes over it, saying why
    if not isinstance(data, dict):
        return None
    try:
        return json.loads(ExperimentSpec.model_validate(data).model_dump_json())
    except ValidationError:
        return data  # compared as written


def check_same_run(run_dir: Path, spec: ExperimentSpec, overrides: Sequence[str], *,
                   plugins: Sequence[str] = (), renamed: bool = False) -> None:
    """Refuse (InputError, one line per field) a resumed ``spec`` that differs from the spec of
    ``run_dir`` where ``overrides`` do not ask for it, or anywhere in the model."""
    saved = run_spec(run_dir)
    if saved is None:
        return
    asked = set_fields(overrides) + (["name"] if renamed else [])
    problems = []
    for path, was, given in differences(saved, json.loads(spec.model_dump_json())):
        shown = f"{escaped(path)}: run's {_show(was)} vs given {_show(given)}"
        if path == "model" or path.startswith("model."):
            problems.append(f"{shown} (a run's model cannot change: its weights fix it)")
        elif not any(path == key or path.startswith(f"{key}.") for key in asked):
            problems.append(shown)
    if not problems:
        return
    cut = problems[:SHOWN_DIFFERENCES]
    if len(problems) > len(cut):
        cut.append(f"... and {len(problems) - len(cut)} more differing field(s)")
    raise InputError(f"the spec given differs from the one {run_dir} was trained with in {len(problems)} field(s) "
                     f"(path: run's value vs given value); continue the run with its own spec: "
                     f"{resume_command(run_dir, plugins=plugins)}, and --set the fields you mean to change", *cut)


def differences(was: Any, given: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(dotted path, was, given)`` for each leaf where two JSON documents differ; lists of equal
    length compare entry by entry (by index), others as a whole."""
    if isinstance(was, dict) and isinstance(given, dict):
        for key in [*was, *(key for key in given if key not in was)]:
            yield from differences(was.get(key, _ABSENT), given.get(key, _ABSENT), f"{path}.{key}" if path else key)
    elif isinstance(was, list) and isinstance(given, list) and len(was) == len(given):
        for index, (old, new) in enumerate(zip(was, given)):
            yield from differences(old, new, f"{path}.{index}")
    elif was is _ABSENT or given is _ABSENT or type(was) is not type(given) or was != given:
        yield path, was, given


def _show(value: Any, limit: int = 60) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value)  # ensure_ascii: control characters arrive escaped
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
