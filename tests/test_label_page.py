"""`iberlite label`: a person labels the newest batch on the page, with the keyboard.

The real command serves the page from a subprocess; Debian's Chromium, driven by Playwright,
presses the keys. Every label must be in the database the moment it is given, so a server
killed with SIGKILL loses none, and the restarted page goes on with the next row. Two pages at
once must not overwrite each other's labels; the model's guess stays hidden until asked; the
page loads nothing from anywhere but the server. Skipped, with the reason, when chromium or
playwright is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from iberlite.errors import UserError
from iberlite.label.queue import LabelQueue
from iberlite.store.labels import LabelBook, LabelEvent, Pick, PoolRow
from iberlite.store.store import Store
from iberlite.tasks.data import doc_from_fields
from iberlite.tasks.registry import load_task_specs
from iberlite.tasks.render import render

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
TASK = "bec_eu"
CHOICES = ["negatiboa", "neutrala", "positiboa"]
TWEETS = [
    "Gaur ez da ezer aldatu Gasteizen.",
    "Hauteskundeak irabazi ditugu!\nEskerrik asko denoi.",
    "<img src=x onerror=\"document.title='pwned'\"> <b>ez</b> da testu lodia",
    "Aurrekontuak bihar aurkeztuko dituzte.",
    "Lotsagarria da gertatutakoa.",
    "Zorionak talde osoari, lan bikaina.",
]


# --- the batch -----------------------------------------------------------------------------


@pytest.fixture()
def batch(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """A database whose bec_eu pool holds six tweets, all selected; returns the file, the row
    hashes in rank order and the texts the page must show."""
    spec = load_task_specs()[TASK]
    rows = []
    for tweet in TWEETS:
        fields = {"text": tweet}
        row_hash = hashlib.sha256(tweet.encode()).hexdigest()
        text = render(spec, doc_from_fields(spec, fields, row_hash), with_target=False).context
        rows.append(PoolRow(TASK, row_hash, fields, text, "tweets.txt", False))
    db = tmp_path / "labels.db"
    with Store(db) as store:
        book = LabelBook(store)
        book.add_pool(rows)
        picks = [Pick(r.row_hash, rank, rank % 3, 0.5) for rank, r in enumerate(rows)]
        book.add_selection(TASK, "smollm2-135m", "smollm2-135m", "uncertainty", 0, 0.1, picks)
    return db, [r.row_hash for r in rows], [r.text for r in rows]


def _events(db: Path) -> list[LabelEvent]:
    with Store(db) as store:
        return LabelBook(store).events(TASK)


def _labels(db: Path) -> dict[str, str | None]:
    with Store(db) as store:
        return {h: e.label for h, e in LabelBook(store).labels(TASK).items()}


# --- the queue alone -------------------------------------------------------------------------


def test_the_queue_refuses_what_is_not_in_the_batch_and_undoes_anyones_newest_event(batch):
    db, rows, texts = batch
    spec = load_task_specs()[TASK]
    ane, jon = LabelQueue(db, spec, "ane"), LabelQueue(db, spec, "jon")
    card = ane.current()
    assert card is not None and card.row_hash == rows[0] and card.text == texts[0]
    assert card.choices == tuple(CHOICES) and card.guess is None and card.progress.total == 6
    assert ane.current(show_guess=True).guess == "negatiboa"  # type: ignore[union-attr]
    with pytest.raises(UserError, match=r"^Choice 4 does not exist: this row has choices 1 to 3\.$"):
        ane.give(rows[0], 3, 1.0)
    with pytest.raises(UserError, match="is not in the newest batch"):
        ane.give("f" * 64, 0, 1.0)
    ane.give(rows[0], 2, 1.5)
    jon.skip(rows[1])
    assert ane.current().row_hash == rows[2]  # type: ignore[union-attr]
    assert ane.undo() == rows[1]  # jon's skip: the task's newest event, whoever gave it
    assert ane.undo() == rows[0]
    assert ane.undo() is None
    assert _labels(db) == {}
    assert [(e.kind, e.labeller) for e in _events(db)] == [
        ("label", "ane"), ("skip", "jon"), ("undo", "ane"), ("undo", "ane")]


# --- the real server and a real browser ------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def _label_cmd(db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "iberlite", "label", "--task", TASK, "--db", str(db), *extra]


class Servers:
    """`iberlite label` subprocesses, each killed at the end of the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen] = []

    def start(self, db: Path, *extra: str) -> tuple[subprocess.Popen, str]:
        """Start a server on a free port; returns it and the URL it printed."""
        log = self.folder / f"server-{len(self.procs)}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(_label_cmd(db, *extra), stdout=out, stderr=subprocess.STDOUT,
                                    env=_env(), cwd=self.folder)
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            found = re.search(rf"^Labelling {TASK} at (http://127\.0\.0\.1:\d+/\S*) \(Ctrl-C to stop\)$",
                              log.read_text(), re.M)
            if found:
                return proc, found.group(1)
            time.sleep(0.05)
        proc.kill()
        pytest.fail(f"the server printed no URL:\n{log.read_text()}")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture()
def servers(tmp_path: Path):
    started = Servers(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright (the Python package) is not installed: pip install playwright")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watch:
    """Every request a page makes and every script error it raises."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []

    def open(self, browser, url: str):
        page = browser.new_page()
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.goto(url)
        return page

    def assert_clean(self) -> None:
        assert self.errors == []
        strangers = [u for u in self.requests if not u.startswith("http://127.0.0.1:")]
        assert self.requests and strangers == [], strangers


def _shows(page, row: str, progress: str, status: str = "") -> None:
    """The page has settled on `row` ("" once the batch is done), with this progress line and
    status message (none after an exchange that went well)."""
    from playwright.sync_api import expect

    expect(page.locator("body")).to_have_attribute("data-row", row)
    expect(page.locator("body")).to_have_attribute("data-busy", "0")
    expect(page.locator("#progress")).to_have_text(progress)
    expect(page.locator("#status")).to_have_text(status)


def test_keys_label_undo_and_a_killed_server_loses_no_label(browser, servers, batch):
    from playwright.sync_api import expect

    db, rows, texts = batch
    proc, url = servers.start(db, "--labeller", "ane")
    watch = Watch()
    page = watch.open(browser, url)
    expect(page.locator("#task")).to_have_text(TASK)
    _shows(page, rows[0], "0 of 6 labelled")
    expect(page.locator("#choices button")).to_have_text(["1 negatiboa", "2 neutrala", "3 positiboa"])
    assert page.locator("#text").inner_text() == texts[0]
    expect(page.locator("#pace")).to_have_text("")

    # the model's guess is nowhere on the page until `g`, and goes away again on `g`
    expect(page.locator("#guess")).to_be_hidden()
    assert page.locator("#guess").text_content() == ""
    page.keyboard.press("g")
    expect(page.locator("#guess")).to_have_text("Model's guess: negatiboa")
    expect(page.locator("body")).to_have_attribute("data-busy", "0")
    page.keyboard.press("g")
    expect(page.locator("#guess")).to_be_hidden()
    assert page.locator("#guess").text_content() == ""

    page.keyboard.press("1")
    _shows(page, rows[1], "1 of 6 labelled")
    assert page.locator("#text").inner_text() == texts[1]  # its newline kept
    page.keyboard.press("3")
    _shows(page, rows[2], "2 of 6 labelled")
    assert page.locator("#text").inner_text() == texts[2]  # markup shown as text, never run
    assert page.locator("#text img, #text b").count() == 0 and page.title() != "pwned"

    page.keyboard.press("u")  # the undone row comes back, saying what it held
    _shows(page, rows[1], "1 of 6 labelled")
    expect(page.locator("#undone")).to_have_text("Undone: this row was labelled positiboa.")
    page.keyboard.press("2")
    _shows(page, rows[2], "2 of 6 labelled")
    page.keyboard.press("s")  # skipped: it comes after the unlabelled rows
    _shows(page, rows[3], "2 of 6 labelled")
    page.keyboard.press("1")
    _shows(page, rows[4], "3 of 6 labelled")
    expect(page.locator("#pace")).to_have_text(re.compile(r"^median \d+\.\d s per label$"))

    # a double key press in one go: the second finds the first in flight and is dropped
    page.evaluate("""() => { for (const key of ['2', '2'])
                               document.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true})); }""")
    _shows(page, rows[5], "4 of 6 labelled")
    before_kill = {rows[0]: "negatiboa", rows[1]: "neutrala", rows[3]: "negatiboa", rows[4]: "neutrala"}
    assert _labels(db) == before_kill
    given = [e for e in _events(db) if e.kind == "label"]
    assert sum(e.row_hash == rows[4] for e in given) == 1
    assert all(e.labeller == "ane" and e.source == "page" and e.seconds and e.seconds > 0 for e in given)

    proc.kill()  # SIGKILL: no shutdown, no flush
    proc.wait(timeout=10)
    page.keyboard.press("3")
    expect(page.locator("#status")).to_contain_text("does not answer")
    expect(page.locator("body")).to_have_attribute("data-busy", "0")
    assert _labels(db) == before_kill

    _, url = servers.start(db, "--labeller", "ane")
    page.goto(url)
    _shows(page, rows[5], "4 of 6 labelled")
    page.keyboard.press("3")
    _shows(page, rows[2], "5 of 6 labelled")  # the skipped row, last
    page.keyboard.press("Backspace")
    _shows(page, rows[5], "4 of 6 labelled")
    page.keyboard.press("3")
    _shows(page, rows[2], "5 of 6 labelled")
    page.keyboard.press("1")
    _shows(page, "", "6 of 6 labelled")
    expect(page.locator("#finished-line")).to_have_text("All 6 rows of this batch are labelled.")
    expect(page.locator("#next-command")).to_have_text(f"iberlite select MODEL --task {TASK} --n N")
    assert _labels(db) == {**before_kill, rows[5]: "positiboa", rows[2]: "negatiboa"}
    watch.assert_clean()


REFUSED = "This row was labelled meanwhile (another page?); here is the next one."


def test_two_pages_at_once_lose_no_label(browser, servers, batch):
    db, rows, _ = batch
    _, url = servers.start(db)
    watch = Watch()
    first, second = watch.open(browser, url), watch.open(browser, url)
    _shows(first, rows[0], "0 of 6 labelled")
    _shows(second, rows[0], "0 of 6 labelled")

    first.keyboard.press("1")
    _shows(first, rows[1], "1 of 6 labelled")
    second.keyboard.press("2")  # still on the row the first page labelled: refused, not overwritten
    _shows(second, rows[1], "1 of 6 labelled", REFUSED)
    second.keyboard.press("2")
    _shows(second, rows[2], "2 of 6 labelled")
    first.keyboard.press("3")
    _shows(first, rows[2], "2 of 6 labelled", REFUSED)
    first.keyboard.press("3")
    _shows(first, rows[3], "3 of 6 labelled")

    assert _labels(db) == {rows[0]: "negatiboa", rows[1]: "neutrala", rows[2]: "positiboa"}
    assert [e.kind for e in _events(db)] == ["label"] * 3
    watch.assert_clean()


def _get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_with_a_token_every_request_must_carry_it(browser, servers, batch):
    db, rows, _ = batch
    _, url = servers.start(db, "--token", "s3cret/+")
    assert url.endswith("/?token=s3cret%2F%2B")
    base = url.split("?")[0]
    for path in ("", "static/page.js", "static/page.css", "api/card", "api/card?token=wrong"):
        assert _get(base + path)[0] == 403, path
    assert _get(base + "api/undo", data=b"")[0] == 403
    status, body = _get(base + "api/card", headers={"X-Iberlite-Token": "s3cret/+"})
    assert status == 200 and json.loads(body)["card"]["row_hash"] == rows[0]

    watch = Watch()  # the page passes its token on to its own files and to the API
    page = watch.open(browser, url)
    _shows(page, rows[0], "0 of 6 labelled")
    page.keyboard.press("u")
    _shows(page, rows[0], "0 of 6 labelled", "Nothing to undo.")
    page.keyboard.press("2")
    _shows(page, rows[1], "1 of 6 labelled")
    assert _labels(db) == {rows[0]: "neutrala"}
    watch.assert_clean()


def _one_sentence(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_refusals_are_one_sentence(batch, tmp_path):
    db, _, _ = batch
    run = lambda *args: subprocess.run(list(args), capture_output=True, text=True, env=_env(), cwd=tmp_path,
                                       timeout=60)
    assert _one_sentence(run(*_label_cmd(db, "--host", "0.0.0.0"))) == (
        "Error: Serving on 0.0.0.0 needs --token: anyone who can reach it could label.")
    empty = tmp_path / "empty.db"
    Store(empty).close()
    assert _one_sentence(run(*_label_cmd(empty))) == (
        f"Error: No batch selected for {TASK}; run `iberlite select MODEL --task {TASK} --n N` first.")
