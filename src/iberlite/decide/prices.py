"""The user's cost assumptions (YAML): cloud prices, electricity, device hardware, volume.

Nothing here is a fact about any vendor: the shipped example profile is illustrative and
says so. Money is in the profile's `currency`; tokens are priced per million.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from iberlite.errors import UserError

HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class CostProfile:
    """Prices and volumes a routing decision is costed with."""

    currency: str
    cloud_input_per_mtok: float
    cloud_output_per_mtok: float
    cloud_latency_overhead_ms: float
    electricity_per_kwh: float
    device_hardware_cost: float
    device_lifetime_hours: float
    device_fixed_monthly: float
    volume_default: int
    volume: dict[str, int] = field(default_factory=dict)
    illustrative: bool = False
    source: str = ""
    amortize_months: float = 12.0  # over how many months a one-off cost (training, labels) is spread
    one_off_monthly: float = 0.0  # one-off costs (an adapter's training and labels) per month of that spread
    labelling_per_hour: float | None = None  # what an hour of people labelling costs; None: not priced
    seconds_per_label: float | None = None  # assumed when the labelling page timed no label

    def monthly_volume(self, task: str, lang: str) -> int:
        """Requests per month for a task: by task name, then by language, then the default."""
        return int(self.volume.get(task, self.volume.get(lang, self.volume_default)))

    def cloud_cost(self, input_tokens: float, output_tokens: float) -> float:
        """Price of one cloud request."""
        return (input_tokens * self.cloud_input_per_mtok + output_tokens * self.cloud_output_per_mtok) / 1e6

    def device_energy_cost(self, joules: float) -> float:
        """Electricity for one device request."""
        return joules / 3.6e6 * self.electricity_per_kwh

    @property
    def device_monthly_fixed(self) -> float:
        """Hardware amortised over its lifetime (a dedicated device, on all month) plus any
        fixed monthly cost of running on the device; 0 when the device is the user's own."""
        hw = self.device_hardware_cost / self.device_lifetime_hours * HOURS_PER_MONTH
        return hw + self.device_fixed_monthly + self.one_off_monthly

    def device_time_cost(self, wall_seconds: float, cpu_seconds: float, watts_per_core: float) -> float:
        """What a one-off job on the device costs: its electricity (CPU seconds times the watts
        assumed per busy core) plus its share of the hardware (wall time over the lifetime)."""
        energy = self.device_energy_cost(cpu_seconds * watts_per_core)
        return energy + self.device_hardware_cost * wall_seconds / 3600 / self.device_lifetime_hours

    def labelling_cost(self, labels: int, seconds_per_label: float) -> float:
        """What people's time on `labels` labels costs at the profile's price of an hour."""
        return labels * seconds_per_label * (self.labelling_per_hour or 0.0) / 3600

    def with_one_off(self, cost: float) -> "CostProfile":
        """The profile with a one-off cost spread evenly over `amortize_months`: a fixed monthly
        cost of every option that uses the device (as an adapter's training and labels are)."""
        return replace(self, one_off_monthly=self.one_off_monthly + cost / self.amortize_months)

    def to_dict(self) -> dict:
        return asdict(self)


def money(amount: float, currency: str) -> str:
    """An amount as every decide table and sentence shows it: `1,234.50 EUR`."""
    return f"{amount:,.2f} {currency}".strip()


def _number(section: dict, key: str, where: str, default: float | None = None) -> float:
    value = section.get(key, default)
    if value is None:
        raise UserError(f"Cost profile {where}: `{key}` is missing.", 2)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise UserError(f"Cost profile {where}: `{key}` must be a non-negative number, not {value!r}.", 2)
    return float(value)


def load_profile(path: Path) -> CostProfile:
    """Read and check a cost profile; any problem is one sentence (UserError, exit 2)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"Cost profile {path} does not exist.", 2) from None
    except yaml.YAMLError as exc:
        raise UserError(f"Cost profile {path} is not valid YAML ({type(exc).__name__}).", 2) from None
    if not isinstance(raw, dict):
        raise UserError(f"Cost profile {path} must be a mapping with cloud, device and volume.", 2)
    cloud, device, volume = (raw.get(k) or {} for k in ("cloud", "device", "volume"))
    if not all(isinstance(s, dict) for s in (cloud, device, volume)):
        raise UserError(f"Cost profile {path}: cloud, device and volume must be mappings.", 2)
    labelling = raw.get("labelling")
    if labelling is not None and not isinstance(labelling, dict):
        raise UserError(f"Cost profile {path}: labelling must be a mapping with per_hour "
                        "(and optionally seconds_per_label).", 2)
    lifetime = _number(device, "lifetime_hours", "device", 1.0)
    if lifetime <= 0:
        raise UserError(f"Cost profile {path}: device `lifetime_hours` must be positive.", 2)
    per_key = {str(k): int(_number(volume, k, "volume")) for k in volume if k != "default"}
    months = _number(device, "amortize_months", "device", 12.0)
    if months <= 0:
        raise UserError(f"Cost profile {path}: device `amortize_months` must be positive.", 2)
    return CostProfile(
        currency=str(raw.get("currency", "")),
        cloud_input_per_mtok=_number(cloud, "input_per_mtok", "cloud"),
        cloud_output_per_mtok=_number(cloud, "output_per_mtok", "cloud"),
        cloud_latency_overhead_ms=_number(cloud, "latency_overhead_ms", "cloud", 0.0),
        electricity_per_kwh=_number(device, "electricity_per_kwh", "device"),
        device_hardware_cost=_number(device, "hardware_cost", "device", 0.0),
        device_lifetime_hours=lifetime,
        device_fixed_monthly=_number(device, "fixed_monthly", "device", 0.0),
        volume_default=int(_number(volume, "default", "volume")),
        volume=per_key,
        illustrative=bool(raw.get("illustrative", False)),
        source=str(path),
        amortize_months=months,
        # a section without its price would cost every label nothing: `per_hour` is then required
        labelling_per_hour=_number(labelling, "per_hour", "labelling") if labelling is not None else None,
        seconds_per_label=(_number(labelling, "seconds_per_label", "labelling")
                           if labelling and labelling.get("seconds_per_label") is not None else None),
    )
