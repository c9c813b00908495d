"""Apply a routing decision at run time: answer on the device, or escalate to the cloud.

`iberlite decide` writes a policy file (JSON): per (task, language) an action (device, cloud
or cascade with a confidence threshold). `HybridRouter(policy, device, cloud)` applies it to
new requests: the device model answers first when the action is device or cascade, and a
cascade sends the request to the cloud when the device's confidence is below the threshold
(the same confidence the decision was made on: choice-probability margin for multiple
choice, mean token logprob for generation).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from iberlite.engines.base import Engine, GenerationRequest
from iberlite.engines.requests import choice_requests
from iberlite.errors import UserError
from iberlite.scoring.metrics import choice_margin, mc_prediction
from iberlite.tasks.data import Doc, doc_from_fields
from iberlite.tasks.fewshot import FewshotSetup, fixed_prefix, load_pool, pool_hash
from iberlite.tasks.render import render
from iberlite.tasks.spec import TaskSpec

POLICY_VERSION = 1


@dataclass(frozen=True)
class Route:
    """What to do for one (task, language)."""

    task: str
    lang: str
    output: str
    action: str  # device | cloud | cascade
    threshold: float | None = None
    device_model: str | None = None  # the device candidate's model (None: the policy's device model)
    fewshot: dict | None = None  # fixed shots it was evaluated with (k, mode, sampler, seed, pool_hash)


@dataclass(frozen=True)
class Policy:
    """A routing policy: the models it was decided for and a route per (task, language)."""

    device_model: str
    cloud_model: str
    min_accuracy: float
    routes: tuple[Route, ...]
    created: str = ""
    decision_id: int | None = None

    def route(self, task: str, lang: str, output: str | None = None) -> Route:
        """The route for a task; a task without its own falls back to the language's
        routes of the same output kind: cloud if any of them escalates, else device."""
        for r in self.routes:
            if r.task == task and r.lang == lang:
                return r
        same = [r for r in self.routes if r.lang == lang and (output is None or r.output == output)]
        if not same:
            raise UserError(f"The policy has no route for task {task!r} or language {lang!r}.", 2)
        action = "cloud" if any(r.action != "device" for r in same) else "device"
        return Route(task, lang, output or same[0].output, action)

    def device_for(self, route: Route) -> str:
        """The device model that answers on a route (each route may have its own candidate)."""
        return route.device_model or self.device_model

    def save(self, path: Path) -> None:
        data = {"version": POLICY_VERSION, **asdict(self)}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @staticmethod
    def load(path: Path) -> "Policy":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"Policy file {path} does not exist; write one with `iberlite decide`.", 2) from None
        except json.JSONDecodeError:
            raise UserError(f"Policy file {path} is not valid JSON.", 2) from None
        if not isinstance(data, dict) or data.get("version") != POLICY_VERSION:
            raise UserError(f"Policy file {path} is not an iberlite policy (version {POLICY_VERSION}).", 2)
        try:
            routes = tuple(Route(**r) for r in data["routes"])
            return Policy(data["device_model"], data["cloud_model"], float(data["min_accuracy"]),
                          routes, data.get("created", ""), data.get("decision_id"))
        except (KeyError, TypeError) as exc:
            raise UserError(f"Policy file {path} is incomplete ({exc}).", 2) from None


def shot_prefix(route: Route, spec: TaskSpec, data_dir: Path) -> str:
    """The fixed shots a route's device candidate was evaluated with ('' for none), rebuilt by
    `tasks.fewshot` from the task's pool with the evaluation's seed. Per-item shots cannot be
    rebuilt for a new request, and a pool or sampler that changed since the decision would not
    give the shots that were measured: both are refused in one sentence."""
    fs = route.fewshot
    if not fs:
        return ""
    if fs.get("mode") != "fixed":
        raise UserError(f"The policy routes {spec.name} to {fs.get('k')} {fs.get('mode')} shots; only fixed "
                        "shots can be given to a new request as they were evaluated.", 2)
    pool = load_pool(spec, data_dir)
    if pool_hash(pool) != fs.get("pool_hash") or spec.fewshot.sampler != fs.get("sampler"):
        raise UserError(f"The few-shot pool or sampler of {spec.name} changed since the decision; run the "
                        "few-shot evaluation and `iberlite decide` again.", 2)
    return fixed_prefix(spec, pool, FewshotSetup(int(fs["k"]), "fixed", int(fs["seed"])))


@dataclass(frozen=True)
class Answer:
    """A routed answer: what was answered, by whom, how sure the device was, what it took."""

    source: str  # device | cloud
    text: str
    choice: int | None
    confidence: float | None
    device_ms: float
    cloud_ms: float


class HybridRouter:
    """Answers with the device model and escalates to the cloud model as the policy says.

    `cloud` may be an engine or a zero-argument callable returning one, so a router whose
    routes never escalate does not connect to the cloud at all.
    """

    def __init__(self, policy: Policy, device: Engine, cloud: Engine | Callable[[], Engine]) -> None:
        self.policy, self.device = policy, device
        self._cloud = cloud

    @property
    def cloud(self) -> Engine:
        if callable(self._cloud) and not hasattr(self._cloud, "loglikelihood"):
            self._cloud = self._cloud()
        return self._cloud  # type: ignore[return-value]

    def classify(self, task: TaskSpec, doc: Doc | dict, shots: str = "") -> Answer:
        """Answer one multiple-choice document of `task` (a Doc, or its raw fields). `shots` is
        the route's fixed prefix (`shot_prefix`): the device is prompted with it, as its
        candidate was evaluated; the cloud, evaluated zero-shot, without."""
        if task.output != "multiple_choice":
            raise UserError(f"Task {task.name} is not multiple choice; use generate().", 2)
        inst = render(task, doc if isinstance(doc, Doc) else doc_from_fields(task, doc), with_target=False)
        route = self.policy.route(task.name, task.lang, task.output)
        reqs = choice_requests(inst, "route")
        dev_ms = conf = 0.0
        if route.action != "cloud":
            dev_inst = replace(inst, context=shots + inst.context, shared_prefix=shots) if shots else inst
            t0 = time.perf_counter()
            lps = [r.logprob for r in self.device.loglikelihood(choice_requests(dev_inst, "route"))]
            dev_ms = (time.perf_counter() - t0) * 1000
            conf = choice_margin(lps)
            if route.action == "device" or conf >= (route.threshold or 0.0):
                k = mc_prediction(lps)
                return Answer("device", inst.choices[k], k, conf, dev_ms, 0.0)
        t0 = time.perf_counter()
        lps = [r.logprob for r in self.cloud.loglikelihood(reqs)]
        k = mc_prediction(lps)
        text = inst.choices[k] if k >= 0 else ""
        return Answer("cloud", text, k, conf if route.action == "cascade" else None, dev_ms,
                      (time.perf_counter() - t0) * 1000)

    def generate(self, prompt: str, lang: str, task: str = "", until: tuple[str, ...] = ("\n",),
                 max_tokens: int = 256, shots: str = "") -> Answer:
        """Generate for a prompt in `lang` (with `task`'s route if the policy has one); `shots`
        as in `classify`."""
        route = self.policy.route(task, lang, "generate")
        req = GenerationRequest(prompt, until, max_tokens)
        dev_ms, conf = 0.0, None
        if route.action != "cloud":
            res = self.device.generate([replace(req, prompt=shots + prompt)])[0]
            dev_ms, conf = res.wall_ms, res.mean_logprob
            if route.action == "device" or (conf is not None and conf >= (route.threshold or 0.0)):
                return Answer("device", res.text, None, conf, dev_ms, 0.0)
        res = self.cloud.generate([req])[0]
        return Answer("cloud", res.text, None, conf, dev_ms, res.wall_ms)
