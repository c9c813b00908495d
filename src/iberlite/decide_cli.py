"""`iberlite decide` and `iberlite route`: plain functions cli.py registers with typer.

The analysis lives in :mod:`iberlite.analysis.routing`, the run-time router in
:mod:`iberlite.router`; this module parses, prints and writes files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .analysis.routing import Decision, Option, decide, load_pairs
from .cost_profile import load_profile
from .errors import UserError
from .router import Policy, Route
from .store import Store, json_safe


def _money(x: float, currency: str) -> str:
    return f"{x:,.2f} {currency}".strip()


def _opt(o: Option | None) -> str:
    if o is None:
        return "-"
    if o.action.startswith("rule:"):
        return f"{o.action.removeprefix('rule:')} {o.accuracy:.3f}"
    t = f" t={o.threshold:.3f}" if o.action == "cascade" and o.threshold is not None else ""
    return f"{o.accuracy:.3f}{t} ({o.cloud_share:.0%} cloud)"


def decisions_table(decisions: list[Decision], currency: str, min_accuracy: float) -> Table:
    table = Table(title=f"Routing decision: target accuracy {min_accuracy:.2f} "
                        "(chosen on the calibration half, reported on the test half)")
    for col in ("task", "lang", "n cal/test", "device", "cloud", "cascade", "rule", "recommend",
                "accuracy [95% CI]", "cloud share", "monthly", "volume/mo", "break-even/mo"):
        table.add_column(col, justify="left" if col in ("task", "lang", "recommend") else "right")
    for d in decisions:
        c = d.chosen
        rec = c.action + (f" t={c.threshold:.3f}" if c.action == "cascade" else "")
        if not d.meets_target:
            rec += " (below target)"
        be = "never" if d.break_even_volume is None else f"{d.break_even_volume:,.0f}"
        table.add_row(
            d.task, d.lang, f"{d.n_calib}/{d.n_test}", f"{d.device.accuracy:.3f}",
            f"{d.cloud.accuracy:.3f}", _opt(d.cascade), _opt(d.rule), rec,
            f"{c.accuracy:.3f} [{c.ci_low:.2f},{c.ci_high:.2f}]", f"{c.cloud_share:.0%}",
            _money(c.monthly_cost, currency), f"{d.volume:,}", be,
        )
    return table


def decide_command(console: Console, *, device: str, cloud: str, profile_path: Path, min_accuracy: float,
                   db: Path, policy_out: Path, seed: int, json_out: Path | None, command: str) -> None:
    if not 0.0 <= min_accuracy <= 1.0:
        raise UserError(f"--min-accuracy must be between 0 and 1, not {min_accuracy}.", 2)
    profile = load_profile(profile_path)
    pairs = load_pairs(db, device, cloud)
    decisions = decide(pairs, profile, min_accuracy, seed=seed)
    if not decisions:
        raise UserError(f"{device} and {cloud} share too few items per task to split them in half.", 2)
    if profile.illustrative:
        console.print(f"[yellow]The cost profile {profile_path} is marked illustrative: its prices are "
                      "examples, not facts.[/yellow]")
    console.print(decisions_table(decisions, profile.currency, min_accuracy))
    store = Store(db)
    try:
        decision_id = store.add_decision(command, device, cloud, min_accuracy, profile.to_dict(),
                                         [d.to_dict() for d in decisions])
    finally:
        store.close()
    policy = Policy(
        device_model=device, cloud_model=cloud, min_accuracy=min_accuracy,
        routes=tuple(Route(d.task, d.lang, d.output, d.chosen.action, d.chosen.threshold)
                     for d in decisions),
        created=time.strftime("%Y-%m-%dT%H:%M:%S"), decision_id=decision_id,
    )
    policy.save(policy_out)
    if json_out:
        json_out.write_text(json.dumps(json_safe([d.to_dict() for d in decisions]), indent=2) + "\n")
    console.print(f"Decision {decision_id} stored in {db}; policy written to {policy_out}.")


def route_command(console: Console, *, policy_path: Path, task: str, lang: str | None, text: str,
                  base_url: str | None, api_key_env: str, threads: int | None, tasks_dirs: tuple[Path, ...]) -> None:
    from .catalog import resolve_model
    from .data import doc_from_fields
    from .engines.factory import EngineOptions, open_llamacpp
    from .engines.openai_http import EndpointConfig, OpenAIEngine
    from .router import HybridRouter
    from .tasks.registry import load_task_specs
    from .tasks.render import render

    policy = Policy.load(policy_path)
    specs = load_task_specs(tasks_dirs)
    spec = specs.get(task)
    if spec is None:
        raise UserError(f"Unknown task {task!r}; `iberlite tasks` lists them.", 2)
    if lang and lang != spec.lang:
        raise UserError(f"Task {task} is in {spec.lang!r}, not {lang!r}.", 2)
    cloud_model = resolve_model(policy.cloud_model)

    def open_cloud():
        if cloud_model.remote:
            if not base_url:
                raise UserError("This request goes to the cloud model: pass --base-url.", 2)
            return OpenAIEngine(cloud_model.remote, EndpointConfig(base_url, api_key_env=api_key_env))
        return open_llamacpp(cloud_model, EngineOptions(n_threads=threads))

    doc = None
    if spec.output == "multiple_choice":  # check the request before loading a model
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            pass
        if not isinstance(doc, dict):
            raise UserError(f"Task {task} is multiple choice: pass the document as a JSON object "
                            "with the fields its prompt uses.", 2)
        render(spec, doc_from_fields(spec, doc), with_target=False)
    device = open_llamacpp(resolve_model(policy.device_model), EngineOptions(n_threads=threads))
    router = HybridRouter(policy, device, open_cloud)
    try:
        if doc is not None:
            ans = router.classify(spec, doc)
        else:
            ans = router.generate(text, spec.lang, task=spec.name)
    finally:
        device.close()
    console.print_json(json.dumps({
        "source": ans.source, "answer": ans.text, "choice": ans.choice,
        "device_confidence": ans.confidence, "device_ms": round(ans.device_ms, 1),
        "cloud_ms": round(ans.cloud_ms, 1),
    }))
