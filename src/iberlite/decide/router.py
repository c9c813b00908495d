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
from dataclasses import asdict, dataclass
from pathlib import Path

from iberlite.engines.base import Engine, GenerationRequest
from iberlite.engines.requests import choice_requests
from iberlite.errors import UserError
from iberlite.scoring.metrics import choice_margin, mc_prediction
from iberlite.tasks.data import Doc, doc_from_fields
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

    def classify(self, task: TaskSpec, doc: Doc | dict) -> Answer:
        """Answer one multiple-choice document of `task` (a Doc, or its raw fields)."""
        if task.output != "multiple_choice":
            raise UserError(f"Task {task.name} is not multiple choice; use generate().", 2)
        inst = render(task, doc if isinstance(doc, Doc) else doc_from_fields(task, doc), with_target=False)
        route = self.policy.route(task.name, task.lang, task.output)
        reqs = choice_requests(inst, "route")
        dev_ms = conf = 0.0
        if route.action != "cloud":
            t0 = time.perf_counter()
            lps = [r.logprob for r in self.device.loglikelihood(reqs)]
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
                 max_tokens: int = 256) -> Answer:
        """Generate for a prompt in `lang` (with `task`'s route if the policy has one)."""
        route = self.policy.route(task, lang, "generate")
        req = GenerationRequest(prompt, until, max_tokens)
        dev_ms, conf = 0.0, None
        if route.action != "cloud":
            res = self.device.generate([req])[0]
            dev_ms, conf = res.wall_ms, res.mean_logprob
            if route.action == "device" or (conf is not None and conf >= (route.threshold or 0.0)):
                return Answer("device", res.text, None, conf, dev_ms, 0.0)
        res = self.cloud.generate([req])[0]
        return Answer("cloud", res.text, None, conf, dev_ms, res.wall_ms)
