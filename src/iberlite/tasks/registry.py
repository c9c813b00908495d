"""Find task YAML files and select tasks by name, group and language."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from iberlite.errors import TaskSpecError, UserError
from iberlite.tasks.families import family_key
from iberlite.tasks.spec import LANGS, TaskSpec, read_task_file

BUILTIN_DIR = Path(__file__).parent / "builtin"
SAMPLE_DIR = Path(__file__).parent / "sample"
SAMPLE_GROUPS = ("sample_commonsense", "sample_nli", "sample_translation")


def load_task_specs(extra_dirs: Iterable[Path] = ()) -> dict[str, TaskSpec]:
    """All tasks: built-in, the sample suite, then user folders (`--tasks-dir`).

    A user task with the name of a built-in one is an error rather than a silent override,
    so that a number labelled `xnli_es` always means the same prompt.
    """
    specs: dict[str, TaskSpec] = {}
    dirs = [BUILTIN_DIR, SAMPLE_DIR, *extra_dirs]
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise UserError(f"Tasks folder {d} does not exist.", exit_code=2)
        for path in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            spec = read_task_file(path)
            if spec.name in specs:
                raise TaskSpecError(
                    f"Task {spec.name!r} is defined twice: in {specs[spec.name].path} and {path}."
                )
            specs[spec.name] = spec
    return specs


def select_tasks(
    specs: dict[str, TaskSpec],
    names: Sequence[str] | None,
    langs: Sequence[str] | None,
) -> list[TaskSpec]:
    """Resolve `--tasks` (task names, groups or families) and `--langs` to task specs.

    A family is matched as written, built-in or a user's own (`family: qa` -> `--tasks qa`).

    No names means the sample suite, the offline default. An unknown name or language is a
    user error listing the valid choices (exit code 2).
    """
    if langs:
        bad = [lang for lang in langs if lang not in LANGS]
        if bad:
            raise UserError(
                f"Unknown language {bad[0]!r}; valid languages are {', '.join(LANGS)}.",
                exit_code=2,
            )
    wanted = list(names) if names else list(SAMPLE_GROUPS)
    chosen: list[TaskSpec] = []
    for name in wanted:
        matches = [
            s for s in specs.values()
            if name in (s.name, s.group, s.family) and not _hidden_sample(s, name, names)
        ]
        if not matches:
            valid = sorted({s.group or s.name for s in specs.values()})
            families = sorted({s.family for s in specs.values()}, key=family_key)
            raise UserError(
                f"Unknown task {name!r}; valid tasks and groups are {', '.join(valid)}; valid "
                f"families are {', '.join(families)} (see `iberlite tasks`).",
                exit_code=2,
            )
        chosen.extend(s for s in sorted(matches, key=lambda s: s.name) if s not in chosen)
    if langs:
        chosen = [s for s in chosen if s.lang in langs]
        if not chosen:
            raise UserError(
                f"None of the selected tasks is in {', '.join(langs)}; "
                "run `iberlite tasks` to see which languages each task has.",
                exit_code=2,
            )
    return chosen


def _hidden_sample(spec: TaskSpec, name: str, names: Sequence[str] | None) -> bool:
    """A family name (`nli`) selects real tasks only; the smoke suite is asked for by name."""
    is_sample = spec.path.parent == SAMPLE_DIR
    return bool(names) and is_sample and name == spec.family
