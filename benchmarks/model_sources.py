"""What naming a model by its source costs: `iberlite pull` of the same GGUF file by path, from a
Hugging Face Hub repository (first use: listing and download; later uses: cache hit; offline) and
from an Ollama store. The Hub is the test suite's fake Hub (tests/hub_server.py) on 127.0.0.1,
so the download figure is loopback speed, not a network's; what matters is the warm figures
against the path's, and the request counts.

Each command runs as a user runs it (a new process). Prints a table and writes JSON.

    python benchmarks/model_sources.py [--model smollm2-135m] [--reps 5] \
        [--out benchmarks/out/model_sources.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fake Hub and the Ollama store builder live there
try:
    import iberlite  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))

from hub_server import Blob, FakeHub  # noqa: E402
from iberlite.models.names import resolve_model  # noqa: E402

REPO_ID = "bench-org/model-GGUF"


def pull(name: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "iberlite", "pull", name, "--format", "json"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pull {name} failed: {proc.stderr.strip()[-300:]}")
    return wall


def ollama_store(root: Path, gguf: Path) -> None:
    """The model layer only (template and params do not change the timing)."""
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    (root / "blobs").mkdir(parents=True)
    os.link(gguf, root / "blobs" / f"sha256-{digest}")
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "bench" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
         "size": gguf.stat().st_size}]}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "model_sources.json")
    args = ap.parse_args()
    gguf = resolve_model(args.model).file
    file = gguf.name
    hub = FakeHub({REPO_ID: {file: Blob.of(gguf)}})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
                "HF_ENDPOINT": hub.url, "HF_HOME": str(Path(tmp) / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
                "OLLAMA_MODELS": str(Path(tmp) / "ollama"), "IBERLITE_CACHE_DIR": str(Path(tmp) / "cache")}
        ollama_store(Path(tmp) / "ollama", gguf)
        hf_name = f"hf:{REPO_ID}/{file}"

        def row(what: str, name: str, env: dict[str, str], reps: int) -> None:
            hub.requests.clear()
            t = [pull(name, env) for _ in range(reps)]
            rows.append({"what": what, "name": name, "reps": reps, "median_s": statistics.median(t),
                         "min_s": min(t), "max_s": max(t), "hub_requests": len(hub.requests)})

        pull(str(gguf), base)  # warm-up: the file's facts and sha256 are cached from here on
        row("path", str(gguf), base, args.reps)
        row("hf, first use (list + download)", hf_name, base, 1)
        row("hf, cache hit", hf_name, base, args.reps)
        row("hf, HF_HUB_OFFLINE=1", hf_name, {**base, "HF_HUB_OFFLINE": "1"}, args.reps)
        row("ollama", "ollama:bench", base, args.reps)
    hub.stop()
    print(f"iberlite pull of {file} ({gguf.stat().st_size / 2**20:.0f} MiB), {args.reps} reps")
    print(f"{'what':34} {'median s':>9} {'min s':>7} {'max s':>7} {'requests':>9}")
    for r in rows:
        print(f"{r['what']:34} {r['median_s']:9.2f} {r['min_s']:7.2f} {r['max_s']:7.2f} {r['hub_requests']:9d}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "file": file, "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
