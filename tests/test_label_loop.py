"""The labelling loop end to end, as a team runs it, on real Basque tweets and the real models.

A pool of BEC2016eu train tweets is added; SmolLM2 picks 20 rows on this device; a person (the
browser, through Playwright) labels them on the page with the keyboard, undoes one, and keeps
going after the server is killed; the batch goes out as Label Studio JSON and comes back into
a second database with the same labels; an adapter trains on the labels; and the adapted
model picks the next batch from what is left.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iberlite.label.pool import row_hash
from iberlite.store import Store
from iberlite.store.labels import LabelBook
from test_label_page import (
    Servers,
    Watch,
    _env,
    _shows,
    browser as browser,  # noqa: F401  (the module's Chromium fixture)
)

pytestmark = pytest.mark.slow

TASK = "bec_eu"
CHOICES = ["negatiboa", "neutrala", "positiboa"]
GOLD = {"N": 0, "NEU": 1, "P": 2}


def _iberlite(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "iberlite", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def _labels(db: Path) -> dict[str, str]:
    with Store(db) as store:
        return {h: e.label for h, e in LabelBook(store).labels(TASK).items() if e.label}


def _picks(db: Path) -> list[list[str]]:
    with Store(db) as store:
        return [[p.row_hash for p in s.picks] for s in LabelBook(store).selections(TASK)]


def test_pool_select_label_export_import_adapt_and_select_again(browser, tmp_path, data_dir):  # noqa: F811
    from playwright.sync_api import expect

    rows = [json.loads(line) for _, line in zip(range(60), (data_dir / "basqueglue/bec/train.jsonl").open())]
    gold = {row_hash({"text": r["text"]}): CHOICES[GOLD[r["label"]]] for r in rows}
    pool = tmp_path / "tickets.jsonl"
    pool.write_text("".join(json.dumps({"id": r["idx"], "text": r["text"]}) + "\n" for r in rows), encoding="utf-8")
    db, models = tmp_path / "team.db", tmp_path / "models"
    _iberlite("pool", "add", TASK, str(pool), "--db", str(db), "--data-dir", str(data_dir), cwd=tmp_path)
    _iberlite("select", "smollm2-135m", "--task", TASK, "--n", "20", "--strategy", "mix", "--db", str(db),
              "--threads", "2", cwd=tmp_path)
    [batch] = _picks(db)
    assert len(batch) == len(set(batch)) == 20 and set(batch) <= set(gold)
    untouched = tmp_path / "colleague.db"  # the same pool and batch, before anyone labels
    shutil.copy(db, untouched)

    servers = Servers(tmp_path)
    try:
        proc, url = servers.start(db, "--labeller", "ane")
        watch = Watch()
        page = watch.open(browser, url)

        def settled(done: int) -> None:
            expect(page.locator("body")).to_have_attribute("data-busy", "0")
            expect(page.locator("#progress")).to_have_text(f"{done} of 20 labelled")

        def label_current(done: int) -> str:
            settled(done)
            row = page.locator("body").get_attribute("data-row") or ""
            page.keyboard.press(str(CHOICES.index(gold[row]) + 1))
            return row

        first = label_current(0)
        assert first == batch[0]
        settled(1)
        page.keyboard.press("3" if gold[batch[1]] != "positiboa" else "1")  # a slip on the second row...
        _shows(page, batch[2], "2 of 20 labelled")
        page.keyboard.press("u")  # ...undone: the row comes back and gets its right label
        _shows(page, batch[1], "1 of 20 labelled")
        for done in range(1, 10):
            label_current(done)
        settled(10)
        proc.kill()  # mid-way, no shutdown
        proc.wait(timeout=10)
        assert _labels(db) == {h: gold[h] for h in batch[:10]}

        _, url = servers.start(db, "--labeller", "ane")
        page.goto(url)
        for done in range(10, 20):
            label_current(done)
        settled(20)
        expect(page.locator("#finished-line")).to_have_text("All 20 rows of this batch are labelled.")
        watch.assert_clean()
    finally:
        servers.stop_all()
    given = _labels(db)
    assert given == {h: gold[h] for h in batch}

    # out as Label Studio JSON (with the model's guesses) and back into the colleague's copy
    out = tmp_path / "batch.json"
    _iberlite("labels", "export", "--task", TASK, "--format", "label-studio", "-o", str(out), "--db", str(db),
              cwd=tmp_path)
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert all(t["predictions"][0]["result"][0]["value"]["choices"][0] in CHOICES for t in tasks)
    _iberlite("labels", "import", str(out), "--task", TASK, "--db", str(untouched), cwd=tmp_path)
    assert _labels(untouched) == given

    # the loop: an adapter on the 20 labels, then the adapted model picks the next batch
    trained = _iberlite("adapt", "smollm2-135m", "--task", TASK, "--labels", "--db", str(db), "--epochs", "1",
                        "--models-dir", str(models), "--threads", "2", "--format", "json", cwd=tmp_path)
    record = next(models.glob("adapters/*.json"))
    adapter = json.loads(record.read_text())
    assert adapter["labels"] == 20 and adapter["labellers"] == ["ane"] and adapter["examples"] == 20
    assert adapter["train_files"] == ["labels:team.db"] and adapter["steps"] > 0
    assert json.loads(trained.stdout)["rows"][0]["model"] == "smollm2-135m+bec_eu-labels"
    _iberlite("select", "smollm2-135m+bec_eu-labels", "--task", TASK, "--n", "10", "--strategy", "margin",
              "--db", str(db), "--models-dir", str(models), "--threads", "2", cwd=tmp_path)
    second = _picks(db)[-1]
    assert len(second) == 10 and not set(second) & set(batch) and set(second) <= set(gold)
