"""`iberlite decide` and `iberlite route`: plain functions cli.py registers with typer.

The analysis lives in :mod:`iberlite.decide.routing`, the run-time router in
:mod:`iberlite.decide.router`; this module builds the table, prints it and writes files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from iberlite.cli.tables import Column, Est, TableData, check_format, emit
from iberlite.decide.decision import decide_and_store
from iberlite.decide.prices import money
from iberlite.decide.router import Policy
from iberlite.decide.routing import Decision, Option
from iberlite.errors import UserError


def _opt(o: Option | None) -> str:
    if o is None:
        return "-"
    if o.action.startswith("rule:"):
        return f"{o.action.removeprefix('rule:')} {o.accuracy:.3f}"
    t = f" t={o.threshold:.3f}" if o.action == "cascade" and o.threshold is not None else ""
    return f"{o.accuracy:.3f}{t} ({o.cloud_share:.0%} cloud)"


def _recommend(d: Decision) -> str:
    c = d.chosen
    return c.action + (f" t={c.threshold:.3f}" if c.action == "cascade" else "")


def _candidates_json(d: Decision) -> list[dict]:
    return [{"candidate": c.candidate, "recommend": c.chosen.action, "threshold": c.chosen.threshold,
             "meets_target": c.meets_target, "deployable": c.deployable, "device_accuracy": c.device_accuracy,
             "accuracy": c.chosen.accuracy, "calib_accuracy": c.chosen.calib_accuracy,
             "cloud_share": c.chosen.cloud_share, "monthly_cost": c.chosen.monthly_cost} for c in d.candidates]


def _labelling_cells(d: Decision) -> tuple[int | None, float | None, float | None]:
    lab = d.labelling
    if lab is None:
        return None, None, None
    return lab.labels, lab.seconds_median, lab.cost if lab.known else None


def decisions_table(decisions: list[Decision], currency: str, min_accuracy: float,
                    notes: tuple[str, ...] = ()) -> TableData:
    """The decisions as a table: the recommendation, its test-half accuracy with CI, cloud
    share and monthly cost first; what it was chosen against after (hidden first when narrow).
    When several device candidates were compared, which one won, and (json, csv) every one's
    choice; when the candidate's adapter was trained on labels, (json, csv) what they cost."""
    several = any(d.candidates for d in decisions)
    labelled = any(d.labelling for d in decisions)
    cols: tuple[Column, ...] = (
        Column("task", "task"), Column("lang", "lang"),
        *((Column("candidate", "device candidate"),) if several else ()),
        Column("n_calib", "n cal", "num", priority=6), Column("n_test", "n test", "num", priority=5),
        Column("device_accuracy", "device", "num", priority=3, fmt=".3f"),
        Column("cloud_accuracy", "cloud", "num", priority=3, fmt=".3f"),
        Column("cascade", "cascade", "text", priority=7, machine=False),
        Column("rule", "rule", "text", priority=6, machine=False),
        Column("recommend_label", "recommend", "text", machine=False),
        Column("meets_target", "target", fmt=lambda v: "met" if v else "below"),
        Column("accuracy", "accuracy [95% CI]", "num", ci=True, fmt=".3f"),
        Column("cloud_share", "cloud share", "num", priority=2, fmt=".0%"),
        Column("monthly_cost", "monthly", "num", priority=1, fmt=lambda v: money(float(v), currency)),
        Column("volume", "volume/mo", "num", priority=4, fmt=",d"),
        Column("break_even_volume", "break-even/mo", "num", priority=4, fmt=",.0f", missing="never"),
        Column("output", "output", human=False), Column("recommend", "recommend", human=False),
        Column("threshold", "threshold", "num", human=False),
        Column("currency", "currency", human=False),
        Column("cascade_accuracy", "cascade accuracy", "num", human=False),
        Column("cascade_threshold", "cascade threshold", "num", human=False),
        Column("cascade_cloud_share", "cascade cloud share", "num", human=False),
        Column("rule_action", "rule action", human=False), Column("rule_accuracy", "rule accuracy", "num", human=False),
        *((Column("candidates", "candidates", human=False),) if several else ()),
        *((Column("labels", "labels", "num", human=False),
           Column("label_seconds_median", "seconds per label", "num", human=False),
           Column("labelling_cost", "labelling cost", "num", human=False)) if labelled else ()),
    )
    rows = []
    for d in decisions:
        c, cas = d.chosen, d.cascade
        rows.append((
            d.task, d.lang, *((d.candidate,) if several else ()), d.n_calib, d.n_test, d.device.accuracy, d.cloud.accuracy, _opt(cas),
            _opt(d.rule), _recommend(d), d.meets_target, Est(c.accuracy, c.ci_low, c.ci_high, digits=3, ci_digits=2),
            c.cloud_share, c.monthly_cost, d.volume, d.break_even_volume,
            d.output, c.action, c.threshold, currency,
            cas.accuracy if cas else None, cas.threshold if cas else None, cas.cloud_share if cas else None,
            d.rule.action.removeprefix("rule:"), d.rule.accuracy,
            *((_candidates_json(d),) if several else ()),
            *(_labelling_cells(d) if labelled else ()),
        ))
    title = (f"Routing decision: target accuracy {min_accuracy:.2f} "
             "(chosen on the calibration half, reported on the test half)")
    return TableData(title, cols, tuple(rows), notes)


def decide_command(*, device: str | Sequence[str], cloud: str, profile_path: Path, min_accuracy: float, db: Path,
                   policy_out: Path | None, seed: int, json_out: Path | None, command: str,
                   fmt: str = "table", wide: bool = False, err: Console | None = None,
                   device_class: str | None = None) -> None:
    """Decide, print the table (stdout), store the decision; write the policy only to
    `policy_out`. Where things went is said on stderr, so stdout carries only the table."""
    err = err or Console(stderr=True)
    check_format(fmt)
    outcome = decide_and_store(device=device, cloud=cloud, profile_path=profile_path,
                               min_accuracy=min_accuracy, db=db, seed=seed, command=command,
                               device_class=device_class, policy_out=policy_out, json_out=json_out)
    notes: tuple[str, ...] = ((f"The cost profile {profile_path} is marked illustrative: its prices are examples, "
              "not facts."),) if outcome.profile.illustrative else ()
    for setup in outcome.setups:
        a, p = setup.training, setup.profile
        if a is None:
            continue
        notes += (f"{a.model_name} was trained for {a.task} on {a.examples} examples in {a.seconds:.0f} s "
                  f"({a.cpu_seconds:.0f} CPU-s): a one-off {setup.training_cost:.3g} {p.currency} "
                  f"(electricity at the assumed watts per core, and the device's time), spread over "
                  f"{p.amortize_months:g} months, is in the monthly cost of every option "
                  + (f"of {setup.candidate.raw} " if len(outcome.setups) > 1 else "") + "that uses the device.",)
        if setup.labelling is not None:
            notes += (setup.labelling.sentence(a.model_name),)
    notes += outcome.notes
    emit(decisions_table(list(outcome.decisions), outcome.profile.currency, min_accuracy, notes), fmt,
         wide=wide)
    where = (f"policy written to {policy_out}" if policy_out is not None
             else "no policy written (--policy-out PATH writes one for `iberlite route`)")
    also = f"; decisions and curves written to {json_out}" if json_out else ""
    err.print(f"Decision {outcome.decision_id} stored in {db}; {where}{also}.", highlight=False,
              markup=False, soft_wrap=True)


def route_command(console: Console, *, policy_path: Path, task: str, lang: str | None, text: str,
                  base_url: str | None, api_key_env: str, threads: int | None, tasks_dirs: tuple[Path, ...],
                  data_dir: Path | None = None) -> None:
    from iberlite.decide.router import HybridRouter, shot_prefix
    from iberlite.engines.factory import EngineOptions, open_llamacpp
    from iberlite.engines.openai_http import EndpointConfig, OpenAIEngine
    from iberlite.models.names import resolve_model
    from iberlite.tasks.data import default_data_dir, doc_from_fields
    from iberlite.tasks.registry import load_task_specs
    from iberlite.tasks.render import render

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
    route = policy.route(spec.name, spec.lang, spec.output)
    shots = shot_prefix(route, spec, data_dir or default_data_dir()) if route.action != "cloud" else ""
    device = open_llamacpp(resolve_model(policy.device_for(route)), EngineOptions(n_threads=threads))
    router = HybridRouter(policy, device, open_cloud)
    try:
        if doc is not None:
            ans = router.classify(spec, doc, shots=shots)
        else:
            ans = router.generate(text, spec.lang, task=spec.name, shots=shots)
    finally:
        device.close()
    console.print_json(json.dumps({
        "source": ans.source, "answer": ans.text, "choice": ans.choice,
        "device_confidence": ans.confidence, "device_ms": round(ans.device_ms, 1),
        "cloud_ms": round(ans.cloud_ms, 1),
    }))
