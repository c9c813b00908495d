"""GGUF models from Hugging Face Hub repositories: ``hf:ORG/REPO[:QUANT]`` or ``hf:ORG/REPO/FILE.gguf``.

The file is picked from the repository's listing (a quant tag such as ``Q4_K_M`` matches, case
aside, the quant written in the file name) and downloaded through ``huggingface_hub``, so its
cache, resume and progress bar are the ones every other tool shares. The commit the listing came
from is pinned: a name resolved once resolves again from the local cache, with no request, to the
same commit (and the same file), until a name the pinned listing cannot answer asks the Hub for a
newer listing. Split GGUF files (``-00001-of-0000N``) are downloaded whole; llama.cpp loads the
first part and finds the others beside it.

``HF_ENDPOINT``, ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` mean what they
mean to ``huggingface_hub`` (they are read when it is imported). It is imported in the functions
that use it: importing it costs about a second here, which every command naming no Hub model
would otherwise pay.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from iberlite.cache import cache_dir, read_json, write_json
from iberlite.errors import UserError

HUB_PREFIX = "hf:"
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(r"(?<![A-Za-z0-9])(I?Q\d[A-Za-z0-9_]*|BF16|F16|F32)(?=[-.])", re.IGNORECASE)
_DOWNLOAD_ATTEMPTS = 5


@dataclass(frozen=True)
class HubName:
    """A parsed ``hf:`` name: the repository and either a quant tag or a file (or neither)."""

    repo: str
    quant: str | None = None
    file: str | None = None

    @property
    def canonical(self) -> str:
        """The name results are stored under: quant tags upper-cased, as the Hub writes them."""
        if self.file:
            return f"{HUB_PREFIX}{self.repo}/{self.file}"
        return f"{HUB_PREFIX}{self.repo}" + (f":{self.quant.upper()}" if self.quant else "")


@dataclass(frozen=True)
class HubFile:
    """A GGUF model resolved on the Hub: what a result records about where its file came from."""

    name: str  # the canonical hf: name (see HubName.canonical)
    repo: str
    file: str  # the file llama.cpp opens (the first part of a split model)
    commit: str
    parts: tuple[str, ...]  # every file of the model, in order (one unless split)
    path: Path  # the first part in the local Hugging Face cache

    def extra(self) -> dict[str, str]:
        """The engine-info fields that carry this file's origin into the signature."""
        return {"hf_repo": self.repo, "hf_file": self.file, "hf_commit": self.commit}


def is_hub_name(name: str) -> bool:
    """True for names that start with ``hf:``."""
    return name.startswith(HUB_PREFIX)


def parse_hub_name(name: str) -> HubName:
    """``hf:ORG/REPO``, ``hf:ORG/REPO:QUANT`` or ``hf:ORG/REPO/PATH/FILE.gguf``; anything else is
    a user error (exit 2)."""
    body = name[len(HUB_PREFIX):] if is_hub_name(name) else name
    pieces = body.split("/")
    if len(pieces) >= 3 and body.lower().endswith(".gguf") and all(pieces):
        return HubName("/".join(pieces[:2]), file="/".join(pieces[2:]))
    repo, _, quant = body.partition(":")
    org_name = repo.split("/")
    if len(org_name) != 2 or not all(org_name) or ":" in quant:
        raise UserError(f"{name!r} is not a Hub model name; use hf:ORG/REPO, hf:ORG/REPO:QUANT "
                        "or hf:ORG/REPO/FILE.gguf.", 2)
    return HubName(repo, quant=quant or None)


def gguf_models(files: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The repository's GGUF models: first file -> every part. Vision projectors (``mmproj``)
    are not models on their own and are left out."""
    groups: dict[str, list[str]] = {}
    for f in files:
        base = f.rsplit("/", 1)[-1]
        if not base.lower().endswith(".gguf") or base.lower().startswith("mmproj"):
            continue
        m = _SPLIT.match(f)
        key = f"{m['stem']}-{1:05d}-of-{m['total']}.gguf" if m else f
        groups.setdefault(key, []).append(f)
    return {k: tuple(sorted(v)) for k, v in sorted(groups.items())}


def quant_of(file: str) -> str | None:
    """The quant written in a file name (``Q4_K_M`` in ``Model-Q4_K_M.gguf``), if any."""
    found = _QUANT.findall(file.rsplit("/", 1)[-1])
    return found[-1].upper() if found else None


def _matches(file: str, quant: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9_])", file, re.IGNORECASE) is not None


def _listing(models: Iterable[str]) -> str:
    return ", ".join(quant_of(m) or m for m in models)


def select(ref: HubName, files: Iterable[str]) -> tuple[str, ...]:
    """The parts of the one model in `files` that `ref` names; none or several is a user error
    that lists what the repository has."""
    models = gguf_models(files)
    if not models:
        raise UserError(f"Repository {ref.repo} has no GGUF files.", 2)
    if ref.file:
        for parts in models.values():
            if ref.file in parts:
                return parts
        raise UserError(f"Repository {ref.repo} has no file {ref.file}; its GGUF files are "
                        f"{', '.join(models)}.", 2)
    picked = [m for m in models if ref.quant is None or _matches(m, ref.quant)]
    if len(picked) == 1:
        return models[picked[0]]
    if not picked:
        raise UserError(f"No GGUF file in {ref.repo} matches {ref.quant}; it has {_listing(models)}.", 2)
    what = (f"{len(picked)} GGUF files in {ref.repo} match {ref.quant} ({', '.join(picked)})"
            if ref.quant else f"{ref.repo} has {len(picked)} GGUF models ({_listing(picked)})")
    raise UserError(f"{what}; name one with hf:{ref.repo}:QUANT or hf:{ref.repo}/FILE.gguf.", 2)


def _pins_path() -> Path:
    return cache_dir() / "hub_pins.json"


def _pinned(repo: str) -> tuple[str, list[str]] | None:
    """The commit and listing this repository was last resolved at, if any."""
    pin = read_json(_pins_path()).get(repo)
    if isinstance(pin, dict) and isinstance(pin.get("commit"), str) and isinstance(pin.get("files"), list):
        return pin["commit"], [str(f) for f in pin["files"]]
    return None


def _pin(repo: str, commit: str, files: list[str]) -> None:
    pins = read_json(_pins_path())
    pins[repo] = {"commit": commit, "files": files}
    write_json(_pins_path(), pins)


def _repo_folder(repo: str) -> Path:
    """The repository's folder in the Hugging Face cache (``models--ORG--NAME``). Read here
    rather than through huggingface_hub's file functions, whose import costs 0.4 s that a cache
    hit need not pay; ``constants`` alone is cheap."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))


def _cache_listing(repo: str) -> tuple[str, list[str]] | None:
    """For a cache another tool filled (``hf download``): the commit `main` points to and the
    files of its snapshot."""
    folder = _repo_folder(repo)
    try:
        commit = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = folder / "snapshots" / commit
    return commit, [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*.gguf")]


def _from_cache(ref: HubName, commit: str, files: list[str]) -> HubFile | None:
    parts = select(ref, files)
    snapshot = _repo_folder(ref.repo) / "snapshots" / commit
    if not all((snapshot / p).is_file() for p in parts):  # a pointer exists once its blob is whole
        return None
    return HubFile(ref.canonical, ref.repo, parts[0], commit, parts, snapshot / parts[0])


def resolve_hub(name: str, *, say: Callable[[str], None] | None = None) -> HubFile:
    """The local file of a ``hf:`` name: from the cache when the pinned listing answers it,
    else listed and downloaded from the Hub (``say`` hears about resumed downloads)."""
    from huggingface_hub import constants

    ref = parse_hub_name(name)
    offline = bool(constants.HF_HUB_OFFLINE)
    for known in (_pinned(ref.repo), _cache_listing(ref.repo)):
        if known is None:
            continue
        try:
            hit = _from_cache(ref, *known)
        except UserError:
            if offline:
                raise  # the listing we have is all we can know
            hit = None
        if hit is not None:
            return hit
    if offline:
        raise UserError(f"{name} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
                        "and HF_HUB_OFFLINE is set; download it once with a network.", 2)
    commit, files = _list_repo(ref.repo, name)
    parts = select(ref, files)
    paths = [_download(ref.repo, part, commit, name, say) for part in parts]
    _pin(ref.repo, commit, files)
    return HubFile(ref.canonical, ref.repo, parts[0], commit, parts, paths[0])


def _list_repo(repo: str, name: str) -> tuple[str, list[str]]:
    """The repository's current commit and files (one request)."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        info = HfApi().model_info(repo)
    except GatedRepoError as exc:
        raise UserError(f"Repository {repo} is gated: accept its terms on the Hub and set HF_TOKEN.", 2) from exc
    except RepositoryNotFoundError as exc:
        raise UserError(f"Repository {repo} is not on the Hub at {constants.ENDPOINT} "
                        "(or it is private and HF_TOKEN is not set).", 2) from exc
    except HfHubHTTPError as exc:
        raise UserError(f"The Hub at {constants.ENDPOINT} refused the listing of {repo} "
                        f"({_status(exc)}).", 2) from exc
    except OSError as exc:  # requests' connection errors are OSErrors
        raise UserError(f"Cannot reach the Hub at {constants.ENDPOINT} to resolve {name}, and it is "
                        "not in the local Hugging Face cache.", 2) from exc
    if not info.sha:
        raise UserError(f"The Hub at {constants.ENDPOINT} gave no commit for {repo}.", 2)
    return info.sha, [s.rfilename for s in info.siblings or []]


def _status(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return f"HTTP {response.status_code}" if response is not None else type(exc).__name__


def _download(repo: str, file: str, commit: str, name: str, say: Callable[[str], None] | None) -> Path:
    """One file at the pinned commit through huggingface_hub; a dropped connection resumes from
    the partial file it keeps (a Range request), a few times."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    if say and not (_repo_folder(repo) / "snapshots" / commit / file).is_file():
        say(f"Downloading {file} from {repo} at commit {commit[:12]} into the Hugging Face cache.")
    for attempt in range(1, _DOWNLOAD_ATTEMPTS + 1):
        try:
            return Path(hf_hub_download(repo, file, revision=commit))
        except LocalEntryNotFoundError as exc:  # the HEAD request found no server
            failure: Exception = exc
        except EntryNotFoundError as exc:
            raise UserError(f"Repository {repo} lists {file} but the Hub has no such file at "
                            f"commit {commit[:12]}.", 2) from exc
        except HfHubHTTPError as exc:
            raise UserError(f"The Hub refused the download of {file} from {repo} ({_status(exc)}).", 2) from exc
        except OSError as exc:  # connection dropped mid-file (requests' errors are OSErrors)
            failure = exc
        if attempt < _DOWNLOAD_ATTEMPTS:
            if say:
                say(f"Download of {file} was interrupted ({type(failure).__name__}); resuming.")
            time.sleep(0.5 * attempt)
    raise UserError(f"Could not download {file} from {repo} for {name} after {_DOWNLOAD_ATTEMPTS} "
                    f"attempts ({type(failure).__name__}); run again to resume.", 2)


@dataclass(frozen=True)
class CachedHubModel:
    """A GGUF model found in the local Hugging Face cache (for `iberlite models`)."""

    name: str  # the hf: name that opens it
    repo: str
    file: str
    commit: str
    path: Path
    size_bytes: int  # every part


def cached_hub_models() -> list[CachedHubModel]:
    """Every complete GGUF model in the local Hugging Face cache, newest commit first per repo;
    an unreadable or missing cache is an empty list."""
    from huggingface_hub import constants

    root = Path(constants.HF_HUB_CACHE)
    if next(root.glob("models--*/snapshots/**/*.gguf"), None) is None:
        return []  # no GGUF there: skip the scanner, whose import alone costs 0.4 s
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound, CorruptedCacheException

    try:
        info = scan_cache_dir()
    except (CacheNotFound, CorruptedCacheException, OSError):
        return []
    found: list[CachedHubModel] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        seen: set[str] = set()
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            by_name = {f.file_path.relative_to(rev.snapshot_path).as_posix(): f for f in rev.files}
            for first, parts in gguf_models(by_name).items():
                if first in seen or not all(p in by_name for p in parts):
                    continue
                seen.add(first)
                found.append(CachedHubModel(
                    name=_short_name(repo.repo_id, first, by_name), repo=repo.repo_id, file=first,
                    commit=rev.commit_hash, path=by_name[first].file_path,
                    size_bytes=sum(by_name[p].size_on_disk for p in parts)))
    return found


def _short_name(repo: str, first: str, files: Iterable[str]) -> str:
    """``hf:REPO:QUANT`` when that tag picks this file out of the snapshot, else the file name."""
    quant = quant_of(first)
    if quant:
        try:
            if select(HubName(repo, quant=quant), files)[0] == first:
                return f"{HUB_PREFIX}{repo}:{quant}"
        except UserError:
            pass
    return f"{HUB_PREFIX}{repo}/{first}"
