"""Models a team already pulled with Ollama: ``ollama:NAME[:TAG]``, read from its store.

Ollama keeps a JSON manifest per model at ``manifests/HOST/NAMESPACE/NAME/TAG`` under its models
folder (``OLLAMA_MODELS``, else ``~/.ollama/models``) and content-addressed blobs at
``blobs/sha256-HEX``. The layer of type ``application/vnd.ollama.image.model`` is a GGUF file: it
is opened where it is (never copied), and the chat template and parameters layers are read so a
result can say what Ollama would have served with. No Ollama server is needed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from iberlite.errors import UserError

OLLAMA_PREFIX = "ollama:"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
MODEL_LAYER = "application/vnd.ollama.image.model"
TEMPLATE_LAYER = "application/vnd.ollama.image.template"
PARAMS_LAYER = "application/vnd.ollama.image.params"


@dataclass(frozen=True)
class OllamaModel:
    """An Ollama model's GGUF blob and what its manifest says beside it."""

    name: str  # as Ollama shows it: NAME, NAMESPACE/NAME or HOST/NAMESPACE/NAME
    tag: str
    digest: str  # sha256:HEX of the model layer (the GGUF file's own sha256)
    path: Path  # the blob, in place
    template: str | None  # the chat template layer's text
    params: str | None  # the parameters layer (JSON text), e.g. stop words, temperature

    @property
    def spec(self) -> str:
        """The name results are stored under, with its tag: ``ollama:NAME:TAG``."""
        return f"{OLLAMA_PREFIX}{self.name}:{self.tag}"

    def extra(self) -> dict[str, str]:
        """The engine-info fields that record where the file came from."""
        return {"ollama": f"{self.name}:{self.tag}", "ollama_digest": self.digest,
                **({"ollama_template": self.template} if self.template is not None else {}),
                **({"ollama_params": self.params} if self.params is not None else {})}


def is_ollama_name(name: str) -> bool:
    """True for names that start with ``ollama:``."""
    return name.startswith(OLLAMA_PREFIX)


def ollama_dir() -> Path:
    """Ollama's models folder: ``OLLAMA_MODELS``, else ``~/.ollama/models``."""
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".ollama" / "models"


def _manifest_path(root: Path, name: str, tag: str) -> Path:
    pieces = name.split("/")
    if len(pieces) == 1:
        pieces = [DEFAULT_HOST, DEFAULT_NAMESPACE, *pieces]
    elif len(pieces) == 2:
        pieces = [DEFAULT_HOST, *pieces]
    return root.joinpath("manifests", *pieces, tag)


def _blob(root: Path, digest: str) -> Path:
    return root / "blobs" / digest.replace(":", "-", 1)


def parse_ollama_name(spec: str) -> tuple[str, str]:
    """``ollama:NAME[:TAG]`` -> (NAME, TAG), the tag ``latest`` by default; anything else is a
    user error (exit 2)."""
    body = spec[len(OLLAMA_PREFIX):] if is_ollama_name(spec) else spec
    name, _, tag = body.partition(":")
    tag = tag or "latest"
    pieces = name.split("/")
    if not all(pieces) or ":" in tag or "/" in tag or ".." in pieces or len(pieces) > 3:
        raise UserError(f"{spec!r} is not an Ollama model name; use ollama:NAME or ollama:NAME:TAG.", 2)
    return name, tag


def resolve_ollama(spec: str) -> OllamaModel:
    """The GGUF blob of ``ollama:NAME[:TAG]`` (tag ``latest`` by default) in the local store; a
    missing manifest or blob is a user error (exit 2)."""
    name, tag = parse_ollama_name(spec)
    root = ollama_dir()
    manifest = _manifest_path(root, name, tag)
    try:
        layers = json.loads(manifest.read_text())["layers"]
        by_type = {str(layer["mediaType"]): str(layer["digest"]) for layer in layers}
    except FileNotFoundError:
        raise UserError(f"Ollama has no model {name}:{tag} in {root} (no manifest {manifest}); "
                        "pull it with Ollama or set OLLAMA_MODELS.", 2) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"The Ollama manifest {manifest} cannot be read ({exc}).", 2) from None
    digest = by_type.get(MODEL_LAYER)
    if digest is None:
        raise UserError(f"The Ollama manifest {manifest} has no GGUF model layer.", 2)
    blob = _blob(root, digest)
    if not blob.is_file():
        raise UserError(f"Ollama model {name}:{tag} names the blob {digest}, which is missing "
                        f"from {root / 'blobs'}; pull it again with Ollama.", 2)
    return OllamaModel(name=name, tag=tag, digest=digest, path=blob,
                       template=_layer_text(root, by_type.get(TEMPLATE_LAYER)),
                       params=_params_text(root, by_type.get(PARAMS_LAYER)))


def _layer_text(root: Path, digest: str | None) -> str | None:
    if digest is None:
        return None
    try:
        return _blob(root, digest).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _params_text(root: Path, digest: str | None) -> str | None:
    """The parameters as compact, key-sorted JSON, so equal parameters record equally."""
    text = _layer_text(root, digest)
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return text


@dataclass(frozen=True)
class StoredOllamaModel:
    """A model in the Ollama store (for `iberlite models`)."""

    name: str  # the ollama: name that opens it
    path: Path
    size_bytes: int


def ollama_models() -> list[StoredOllamaModel]:
    """Every model in the store whose manifest and GGUF blob are both present, by name."""
    root = ollama_dir()
    manifests = root / "manifests"
    found: list[StoredOllamaModel] = []
    if not manifests.is_dir():
        return found
    for path in sorted(p for p in manifests.rglob("*") if p.is_file()):
        host, *rest = path.relative_to(manifests).parts
        if len(rest) != 3:
            continue
        namespace, model, tag = rest
        name = model if (host, namespace) == (DEFAULT_HOST, DEFAULT_NAMESPACE) else \
            f"{namespace}/{model}" if host == DEFAULT_HOST else f"{host}/{namespace}/{model}"
        try:
            m = resolve_ollama(f"{OLLAMA_PREFIX}{name}:{tag}")
        except UserError:
            continue
        found.append(StoredOllamaModel(m.spec, m.path, m.path.stat().st_size))
    return sorted(found, key=lambda m: m.name)
