"""Models named on the Hugging Face Hub (`hf:`) and in the Ollama store (`ollama:`).

The Hub is a real HTTP server on 127.0.0.1 (tests/hub_server.py) serving the catalog's two GGUF
files under repository names; `HF_ENDPOINT` points huggingface_hub at it and `HF_HOME` at a
temporary folder, so nothing reaches the internet. Every command runs as a user would run it,
in a subprocess (huggingface_hub reads its environment when it is imported). The Ollama store
is laid out in a temporary folder the way Ollama writes it, with the SmolLM2 file as the model
blob (a hard link, so no 98 MB copy).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hub_server import Blob, FakeHub

REPO = Path(__file__).resolve().parents[1]
COMPACT = "test-org/compact-GGUF"
TWINS = "test-org/SmolLM2-twins-GGUF"
SPLIT = "test-org/SmolLM2-split-GGUF"
SMOL_FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
GEMMA_FILE = "gemma-3-270m-Q4_K_M.gguf"


def _catalog_file(name: str) -> Path:
    from iberlite.errors import UserError
    from iberlite.models.names import resolve_model

    try:
        return resolve_model(name).file
    except UserError as exc:
        pytest.skip(f"catalog model {name} is not installed: {exc}")


@pytest.fixture(scope="module")
def smol() -> Path:
    return _catalog_file("smollm2-135m")


def split_gguf(src: Path, out: Path) -> list[Path]:
    """`src` as a two-part split model, as llama.cpp's gguf-split writes one (half the tensors
    in each part, each part with its own header)."""
    import gguf
    from gguf.scripts.gguf_new_metadata import copy_with_new_metadata

    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(out, reader.fields["general.architecture"].contents(),
                             split_max_tensors=(len(reader.tensors) + 1) // 2)
    copy_with_new_metadata(reader, writer, {}, [])
    return sorted(out.parent.glob(f"{out.stem}-*-of-*.gguf"))


@pytest.fixture(scope="module")
def hub(smol, tmp_path_factory):
    gemma = _catalog_file("gemma3-270m")
    whole = Blob.of(smol)
    first, second = split_gguf(smol, tmp_path_factory.mktemp("split") / "SmolLM2-Q4_1.gguf")
    server = FakeHub({
        COMPACT: {SMOL_FILE: whole, GEMMA_FILE: Blob.of(gemma), "README.md": Blob.of(REPO / "README.md")},
        TWINS: {SMOL_FILE: whole, "SmolLM2-135M-Q4_1.gguf": whole},
        SPLIT: {first.name: Blob.of(first), second.name: Blob.of(second)},
    })
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path, hub) -> dict[str, str]:
    """A user's environment: the fake Hub, an empty HF cache, an empty Ollama store."""
    hub.requests.clear()
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "OLLAMA_")) and k not in ("COLUMNS", "IBERLITE_DATA_DIR")}
    e.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), e.get("PYTHONPATH")])),
             HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1",
             HF_HUB_DISABLE_IMPLICIT_TOKEN="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
             OLLAMA_MODELS=str(tmp_path / "ollama"), COLUMNS="2000")
    return e


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iberlite", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def pulled(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads(proc.stdout)["rows"]
    return row


def one_sentence(proc: subprocess.CompletedProcess) -> str:
    """Exit 2, no traceback, one line `Error: ... .` on stderr; returns it."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and lines[0].endswith("."), proc.stderr
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_quant_tag_picks_its_file_and_the_second_use_is_a_cache_hit(hub, env, tmp_path, smol):
    first = cli("pull", f"hf:{COMPACT}:q4_1", "--format", "json", env=env, cwd=tmp_path)
    row = pulled(first)
    assert f"Downloading {SMOL_FILE} from {COMPACT} at commit {hub.commits[COMPACT][:12]}" in first.stderr
    assert (row["repo"], row["file"], row["commit"]) == (COMPACT, SMOL_FILE, hub.commits[COMPACT])
    assert row["sha256"] == hub.repos[COMPACT][SMOL_FILE].sha256 and row["quant"] == "Q4_1"
    assert Path(row["path"]).is_relative_to(tmp_path / "hf")
    assert len(hub.downloads(SMOL_FILE)) == 1 and not hub.downloads(GEMMA_FILE)

    hub.requests.clear()
    assert row["name"] == f"hf:{COMPACT}:Q4_1"  # the name results are stored under
    second = cli("pull", f"hf:{COMPACT}:Q4_1", "--format", "json", env=env, cwd=tmp_path)
    assert pulled(second) == row and hub.requests == [] and "Downloading" not in second.stderr

    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": dead_endpoint()}
    assert pulled(cli("pull", f"hf:{COMPACT}:Q4_1", "--format", "json", env=offline, cwd=tmp_path)) == row
    by_file = pulled(cli("pull", f"hf:{COMPACT}/{SMOL_FILE}", "--format", "json", env=offline, cwd=tmp_path))
    assert by_file["path"] == row["path"] and hub.requests == []


@pytest.mark.slow
def test_a_variant_of_a_hub_file_keeps_its_origin(hub, env, tmp_path):
    row = pulled(cli("pull", f"hf:{COMPACT}:q4_1@q8_0", "--format", "json", env=env, cwd=tmp_path))
    assert (row["name"], row["quant"]) == (f"hf:{COMPACT}:Q4_1@Q8_0", "Q8_0")
    assert (row["source"], row["file"], row["commit"]) == ("hf", SMOL_FILE, hub.commits[COMPACT])
    assert Path(row["path"]).name.startswith("hf_test-org--compact-GGUF_Q4_1.Q8_0.")


def test_a_dropped_download_resumes_with_a_range_request(hub, env, tmp_path):
    cut = 40 << 20
    hub.drop_once[SMOL_FILE] = cut
    proc = cli("pull", f"hf:{COMPACT}:Q4_1", "--format", "json", env=env, cwd=tmp_path)
    row = pulled(proc)
    first, resumed = hub.downloads(SMOL_FILE)
    assert first.range is None
    assert resumed.range and resumed.range.startswith("bytes=")
    assert 0 < int(resumed.range[len("bytes="):].rstrip("-")) <= cut
    assert "resuming" in proc.stderr
    assert sha256(Path(row["path"])) == hub.repos[COMPACT][SMOL_FILE].sha256


def test_a_split_model_downloads_every_part_and_opens_the_first(hub, env, tmp_path):
    row = pulled(cli("pull", f"hf:{SPLIT}:Q4_1", "--format", "json", env=env, cwd=tmp_path))
    parts = sorted(hub.repos[SPLIT])
    assert parts == ["SmolLM2-Q4_1-00001-of-00002.gguf", "SmolLM2-Q4_1-00002-of-00002.gguf"]
    assert (row["file"], row["parts"]) == (parts[0], 2) and Path(row["path"]).name == parts[0]
    for part in parts:  # both parts are in the cache, beside each other, as llama.cpp needs
        assert sha256(Path(row["path"]).parent / part) == hub.repos[SPLIT][part].sha256
    assert row["size_bytes"] == sum(hub.repos[SPLIT][p].length for p in parts)  # the whole model's facts


def test_a_cache_another_tool_filled_works_offline(hub, env, tmp_path):
    """`hf download` (or any huggingface_hub user) leaves refs/main and a snapshot; iberlite,
    which has never seen the repository (its own cache is empty), finds the file there."""
    fill = ("from huggingface_hub import hf_hub_download; hf_hub_download(%r, %r)" % (COMPACT, SMOL_FILE))
    proc = subprocess.run([sys.executable, "-c", fill], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    hub.requests.clear()
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": dead_endpoint(),
               "IBERLITE_CACHE_DIR": str(tmp_path / "fresh-cache")}
    row = pulled(cli("pull", f"hf:{COMPACT}:Q4_1", "--format", "json", env=offline, cwd=tmp_path))
    assert (row["file"], row["commit"]) == (SMOL_FILE, hub.commits[COMPACT]) and hub.requests == []


def test_quant_tags_pick_files_by_the_quant_in_their_names():
    from iberlite.errors import UserError
    from iberlite.models.hub import HubName, parse_hub_name, select

    files = ["README.md", "M-Q4_K_M.gguf", "M-Q4_K_S.gguf", "M-IQ4_XS.gguf", "M.Q4_0.gguf",
             "mmproj-M-f16.gguf", "Q8_0/M-Q8_0-00001-of-00002.gguf", "Q8_0/M-Q8_0-00002-of-00002.gguf"]
    pick = lambda tag: select(HubName("o/r", quant=tag), files)
    assert pick("q4_k_m") == ("M-Q4_K_M.gguf",) and pick("Q4_0") == ("M.Q4_0.gguf",)
    assert pick("IQ4_XS") == ("M-IQ4_XS.gguf",)
    assert pick("Q8_0") == ("Q8_0/M-Q8_0-00001-of-00002.gguf", "Q8_0/M-Q8_0-00002-of-00002.gguf")
    for tag in ("Q4_K", "Q4", "F16", "Q4_XS"):  # a tag is the whole quant, not a prefix of one
        with pytest.raises(UserError, match=f"matches {tag}; it has IQ4_XS, Q4_K_M, Q4_K_S, Q4_0, Q8_0"):
            pick(tag)
    assert parse_hub_name("hf:o/r/Q8_0/M-Q8_0-00002-of-00002.gguf") == HubName("o/r", file="Q8_0/M-Q8_0-00002-of-00002.gguf")
    assert select(parse_hub_name("hf:o/r/Q8_0/M-Q8_0-00002-of-00002.gguf"), files)[0].endswith("00001-of-00002.gguf")
    for bad in ("hf:just-a-name", "hf:o/r:Q4:Q8", "hf:/r:Q4_0"):
        with pytest.raises(UserError, match="is not a Hub model name"):
            parse_hub_name(bad)


@pytest.mark.parametrize("name, offline, expected", [
    (f"hf:{COMPACT}", False, f"{COMPACT} has 2 GGUF models (Q4_1, Q4_K_M); name one"),
    (f"hf:{COMPACT}:Q8_0", False, f"No GGUF file in {COMPACT} matches Q8_0; it has Q4_1, Q4_K_M."),
    (f"hf:{TWINS}:Q4_1", False, f"2 GGUF files in {TWINS} match Q4_1"),
    (f"hf:{COMPACT}/missing.gguf", False, f"Repository {COMPACT} has no file missing.gguf"),
    ("hf:test-org/no-such-GGUF:Q4_1", False, "Repository test-org/no-such-GGUF is not on the Hub"),
    (f"hf:{COMPACT}:Q4_1", True, "Cannot reach the Hub at"),
])
def test_names_the_hub_cannot_answer_are_one_sentence(hub, env, tmp_path, name, offline, expected):
    if offline:  # no network and no cache
        env = {**env, "HF_ENDPOINT": dead_endpoint()}
    message = one_sentence(cli("pull", name, env=env, cwd=tmp_path))
    assert expected in message
    assert not hub.downloads(SMOL_FILE)


def test_offline_without_the_file_in_the_cache_is_one_sentence(env, tmp_path):
    message = one_sentence(cli("pull", f"hf:{COMPACT}:Q4_1", env={**env, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path))
    assert "is not in the local Hugging Face cache" in message and "HF_HUB_OFFLINE" in message


def test_run_refuses_an_unknown_repository_before_loading_anything(env, tmp_path):
    proc = cli("run", "--models", "hf:test-org/no-such-GGUF:Q4_1", "--tasks", "sample_commonsense",
               "--langs", "es", "--limit", "2", "--db", str(tmp_path / "x.db"), env=env, cwd=tmp_path)
    assert "Repository test-org/no-such-GGUF is not on the Hub" in one_sentence(proc)


def build_ollama_store(root: Path, gguf: Path, name: str = "smollm2", tag: str = "latest") -> str:
    """An Ollama store as Ollama lays it out: blobs named by sha256, a manifest per name:tag."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / f"sha256-{digest}").write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    model_digest = sha256(gguf)
    blob = blobs / f"sha256-{model_digest}"
    if not blob.exists():
        try:
            os.link(gguf, blob)
        except OSError:  # another file system: a copy is what Ollama itself would hold
            shutil.copyfile(gguf, blob)
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   **put(json.dumps({"model_format": "gguf", "model_family": "llama"}).encode())},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{model_digest}",
             "size": gguf.stat().st_size},
            {"mediaType": "application/vnd.ollama.image.template",
             **put(b"{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
                   b"<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n")},
            {"mediaType": "application/vnd.ollama.image.params",
             **put(json.dumps({"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.2}).encode())},
        ],
    }
    path = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return f"sha256:{model_digest}"


def test_an_ollama_model_is_its_blob_in_place_with_template_and_params(env, tmp_path, smol):
    digest = build_ollama_store(tmp_path / "ollama", smol)
    row = pulled(cli("pull", "ollama:smollm2", "--format", "json", env=env, cwd=tmp_path))
    blob = tmp_path / "ollama" / "blobs" / digest.replace(":", "-")
    assert row["path"] == str(blob) and row["digest"] == digest and row["ollama_name"] == "smollm2:latest"
    assert row["sha256"] == digest.removeprefix("sha256:") and row["quant"] == "Q4_1"
    assert row["template"] == "yes" and json.loads(row["params"])["stop"] == ["<|im_start|>", "<|im_end|>"]
    assert row["name"] == "ollama:smollm2:latest"
    assert pulled(cli("pull", "ollama:smollm2:latest", "--format", "json", env=env, cwd=tmp_path)) == row


def test_an_ollama_manifest_without_its_blob_or_name_is_one_sentence(env, tmp_path, smol):
    digest = build_ollama_store(tmp_path / "ollama", smol)
    message = one_sentence(cli("pull", "ollama:smollm2:7b", env=env, cwd=tmp_path))
    assert "Ollama has no model smollm2:7b" in message
    (tmp_path / "ollama" / "blobs" / digest.replace(":", "-")).unlink()
    message = one_sentence(cli("pull", "ollama:smollm2", env=env, cwd=tmp_path))
    assert f"names the blob {digest}, which is missing" in message


def test_ollama_names_follow_its_manifest_folders(tmp_path, monkeypatch, smol):
    """NAME is library/NAME on Ollama's registry, NAMESPACE/NAME is that namespace there, and
    HOST/NAMESPACE/NAME (e.g. hf.co/ORG/REPO, as `ollama pull hf.co/...` stores it) is another host."""
    from iberlite.errors import UserError
    from iberlite.models.ollama import ollama_models, resolve_ollama

    root = tmp_path / "ollama"
    digest = build_ollama_store(root, smol)
    library = root / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "latest"
    for folder in (("registry.ollama.ai", "someone", "smollm2", "v1"), ("hf.co", "test-org", "compact-GGUF", "Q4_1")):
        path = root.joinpath("manifests", *folder)
        path.parent.mkdir(parents=True)
        shutil.copyfile(library, path)
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    for name in ("ollama:smollm2", "ollama:someone/smollm2:v1", "ollama:hf.co/test-org/compact-GGUF:Q4_1"):
        assert resolve_ollama(name).digest == digest
    assert [m.name for m in ollama_models()] == [
        "ollama:hf.co/test-org/compact-GGUF:Q4_1", "ollama:smollm2:latest", "ollama:someone/smollm2:v1"]
    for bad in ("ollama:", "ollama:a/b/c/d", "ollama:../x", "ollama:x:y:z"):
        with pytest.raises(UserError, match="is not an Ollama model name"):
            resolve_ollama(bad)


def test_models_lists_the_hub_cache_and_the_ollama_store_in_80_columns(hub, env, tmp_path, smol):
    short = Path(tempfile.mkdtemp(prefix="ib"))  # the store's path is printed: keep it a user's length
    env = {**env, "OLLAMA_MODELS": str(short / "ollama")}
    build_ollama_store(short / "ollama", smol)
    pulled(cli("pull", f"hf:{COMPACT}:Q4_1", "--format", "json", env=env, cwd=tmp_path))
    rows = {r["name"]: r for r in json.loads(cli("models", "--format", "json", env=env, cwd=tmp_path).stdout)["rows"]}
    hub_row, ollama_row = rows[f"hf:{COMPACT}:Q4_1"], rows["ollama:smollm2:latest"]
    for row, source in ((hub_row, "hf"), (ollama_row, "ollama")):
        assert (row["made_from"], row["architecture"], row["quant"]) == (source, "llama", "Q4_1")
        assert row["size_bytes"] == smol.stat().st_size
    table = cli("models", env={**env, "COLUMNS": "80"}, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert f"hf:{COMPACT}:Q4_1" in table.stdout and "ollama:smollm2:latest" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    shutil.rmtree(short)


@pytest.mark.slow
def test_a_hub_name_and_an_ollama_name_score_as_the_same_file_by_path(hub, env, tmp_path, smol):
    build_ollama_store(tmp_path / "ollama", smol)
    typed = (str(smol), f"hf:{COMPACT}:q4_1", "ollama:smollm2", f"hf:{SPLIT}:Q4_1")
    names = (smol.stem, f"hf:{COMPACT}:Q4_1", "ollama:smollm2:latest", f"hf:{SPLIT}:Q4_1")  # as stored
    db = tmp_path / "runs.db"
    proc = cli("run", "--models", ",".join(typed), "--tasks", "sample_commonsense", "--langs", "es",
               "--limit", "6", "--threads", "1", "--db", str(db), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    from iberlite.store import Store

    with Store.open_readonly(db) as store:
        evals = {e.model: e for e in store.evals()}
        items = {m: [(it.doc_id, it.logprobs, it.prediction) for it in
                     sorted(store.items(e.eval_key), key=lambda it: it.doc_id)] for m, e in evals.items()}
        aggs = {(a.model, a.metric): a for a in store.latest_aggregates()}
    path_name = names[0]
    assert set(evals) == set(names)
    assert len(items[path_name]) == 6
    for other in names[1:]:  # the same logprobs, item by item, so the same scores
        assert items[other] == items[path_name], other
        for metric in {m for _, m in aggs}:
            assert aggs[(other, metric)].value == aggs[(path_name, metric)].value
    hub_sig = aggs[(names[1], "acc")].signature
    assert f"source:hf:{COMPACT}/{SMOL_FILE}@{hub.commits[COMPACT]}" in hub_sig
    assert evals[names[1]].engine["extra"]["hf_commit"] == hub.commits[COMPACT]
    assert "source:ollama:smollm2:latest" in aggs[(names[2], "acc")].signature
    assert "source:" not in aggs[(path_name, "acc")].signature
    assert evals[names[2]].engine["model_path"].startswith(str(tmp_path / "ollama" / "blobs"))
