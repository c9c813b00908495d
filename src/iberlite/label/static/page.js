// The labelling page: shows the server's current card, sends each label, skip and undo, and
// measures how long the person looked at a card before answering. The row's text is only ever
// set as textContent: it is data, never markup.
"use strict";
(() => {
  const token = new URLSearchParams(location.search).get("token");
  const $ = (id) => document.getElementById(id);
  let card = null;
  let showGuess = false; // hidden until asked: a visible guess anchors the labeller
  let busy = false; // one request at a time: a double key press must not label twice
  let shownRow = null;
  let shownAt = 0;

  async function call(method, path, body) {
    const headers = {};
    if (token) headers["X-Iberlite-Token"] = token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const error = new Error((data && data.error) || `The server answered ${response.status}.`);
      error.answered = true;
      throw error;
    }
    return data;
  }

  function say(message) { $("status").textContent = message || ""; }

  function setBusy(value) {
    busy = value;
    document.body.dataset.busy = value ? "1" : "0";
    for (const button of $("choices").children) button.disabled = value;
  }

  function render(answer) {
    const progress = answer.progress;
    $("task").textContent = answer.task;
    document.title = `Labelling ${answer.task}`;
    $("progress").textContent = `${progress.done} of ${progress.total} labelled`;
    $("pace").textContent = progress.median_seconds == null
      ? "" : `median ${progress.median_seconds.toFixed(1)} s per label`;
    card = answer.card;
    $("card").hidden = !card;
    $("finished").hidden = Boolean(card);
    if (!card) {
      $("finished-line").textContent = `All ${progress.total} rows of this batch are labelled.`;
      $("next-command").textContent = `iberlite select MODEL --task ${answer.task} --n N`;
      document.body.dataset.row = "";
      return;
    }
    if (card.row_hash !== shownRow) { // the clock starts when a new row appears
      shownRow = card.row_hash;
      shownAt = performance.now();
    }
    $("text").textContent = card.text;
    const buttons = card.choices.map((choice, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = `${i + 1} ${choice}`;
      button.disabled = busy;
      button.addEventListener("click", () => give(i));
      return button;
    });
    $("choices").replaceChildren(...buttons);
    const guess = showGuess
      ? (card.guess == null ? "The model made no guess for this row." : `Model's guess: ${card.guess}`) : "";
    $("guess").textContent = guess;
    $("guess").hidden = !showGuess;
    $("undone").textContent = card.last_label == null ? "" : `Undone: this row was labelled ${card.last_label}.`;
    $("undone").hidden = card.last_label == null;
    document.body.dataset.row = card.row_hash;
  }

  // Run one exchange with the server (`send` resolves to a message to show, or nothing), then
  // show the server's current card; nothing else meanwhile.
  async function exchange(send) {
    if (busy) return;
    setBusy(true);
    try {
      let message = "";
      try {
        message = (await send()) || "";
      } catch (error) {
        if (!error.answered) throw error;
        message = error.message; // refused (e.g. labelled meanwhile in another page): show the next card
      }
      render(await call("GET", `api/card?guess=${showGuess ? 1 : 0}`));
      say(message);
    } catch (error) {
      say(error.answered ? error.message : "The labelling server does not answer: is `iberlite label` still running?");
    } finally {
      setBusy(false);
    }
  }

  function give(index) {
    if (!card || index >= card.choices.length) return;
    const row = card.row_hash;
    const seconds = (performance.now() - shownAt) / 1000;
    exchange(async () => { await call("POST", "api/label", { row_hash: row, choice: index, seconds }); });
  }

  function skip() {
    if (!card) return;
    const row = card.row_hash;
    exchange(async () => { await call("POST", "api/skip", { row_hash: row }); });
  }

  function undo() {
    exchange(async () => ((await call("POST", "api/undo")).row_hash ? "" : "Nothing to undo."));
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const key = event.key.toLowerCase();
    if (/^[1-9]$/.test(key)) {
      event.preventDefault();
      give(Number(key) - 1);
    } else if (key === "s") {
      skip();
    } else if (key === "u" || key === "backspace") {
      event.preventDefault();
      undo();
    } else if (key === "g") {
      if (busy) return;
      showGuess = !showGuess;
      if (showGuess) {
        exchange(async () => ""); // the guess is only fetched when asked for
      } else {
        $("guess").hidden = true;
        $("guess").textContent = "";
      }
    }
  });

  exchange(async () => "");
})();
