"""A table widget: column headers, click a row to select it, sort by any column, marked rows.

An anywidget component (a DOM table drawn by a few lines of JavaScript shipped with the package):
text in cells is set as text, never as HTML, so nothing from data runs; the rows are real DOM rows
that a screen reader, a copy-paste or a browser test reads. ``value`` holds the selected ids
(like ipywidgets' ``SelectMultiple``), so the kernel reads and sets the selection the same way.

Click selects one row; Ctrl/⌘-click adds or removes a row; Shift-click selects a range (in the
order shown). A header click sorts by that column, again reverses it; numbers sort as numbers,
empty cells last. The first click puts the best first: a metric where lower is better (a loss, a
perplexity) ascending, any other number (accuracy, BLEU, reward, a step, a size) descending, text
A to Z. ``marks`` name a row's badges (e.g. "in use", "best", "latest"). Colours are the theme's
(``core/theme``): a selected or marked row reads in the light and the dark theme.
"""

from __future__ import annotations

import re
from string import Template
from typing import Any

import anywidget
import traitlets

from llm_magics.core.theme import BORDER, FAINT, FRAME, MUTED, RAISED, RAISED_MORE, TEXT, hue, tint

_ESM = """
function render({ model, el }) {
  const table = document.createElement("table");
  table.className = "llm-table";
  el.appendChild(table);
  let anchor = null;  // the row a Shift-click extends from

  function order() {
    const rows = model.get("rows").slice();
    const sort = model.get("sort") || {};
    if (!sort.column) return rows;
    const key = (row) => row.sort && sort.column in row.sort ? row.sort[sort.column] : row.cells[sort.column];
    const sign = sort.descending ? -1 : 1;
    return rows.sort((a, b) => {
      const x = key(a), y = key(b);
      const xEmpty = x === null || x === undefined || x === "", yEmpty = y === null || y === undefined || y === "";
      if (xEmpty || yEmpty) return xEmpty - yEmpty;  // empty cells last, either way
      if (typeof x === "number" && typeof y === "number") return sign * (x - y);
      return sign * String(x).localeCompare(String(y), undefined, { numeric: true });
    });
  }

  function choose(id, event, shown) {
    let chosen = model.get("value").slice();
    if (event.shiftKey && anchor !== null) {
      const ids = shown.map((row) => row.id);
      const [from, to] = [ids.indexOf(anchor), ids.indexOf(id)].sort((a, b) => a - b);
      chosen = from < 0 ? [id] : ids.slice(from, to + 1);
    } else if (event.ctrlKey || event.metaKey) {
      chosen = chosen.includes(id) ? chosen.filter((other) => other !== id) : [...chosen, id];
      anchor = id;
    } else {
      chosen = [id];
      anchor = id;
    }
    model.set("value", chosen);
    model.save_changes();
  }

  function draw() {
    const columns = model.get("columns");
    const sort = model.get("sort") || {};
    const chosen = new Set(model.get("value"));
    const shown = order();
    table.replaceChildren();
    const head = table.createTHead().insertRow();
    for (const column of columns) {
      const th = document.createElement("th");
      th.textContent = column.label + (sort.column === column.key ? (sort.descending ? " ▼" : " ▲") : "");
      th.dataset.column = column.key;
      th.title = "sort by " + column.label;
      if (column.numeric) th.className = "llm-num";
      th.addEventListener("click", () => {
        const again = sort.column === column.key;
        model.set("sort", { column: column.key, descending: again ? !sort.descending : column.first === "descending" });
        model.save_changes();
      });
      head.appendChild(th);
    }
    const body = table.createTBody();
    if (!shown.length) {
      const cell = body.insertRow().insertCell();
      cell.colSpan = columns.length;
      cell.className = "llm-empty";
      cell.textContent = model.get("empty");
    }
    for (const row of shown) {
      const tr = body.insertRow();
      tr.dataset.id = row.id;
      const classes = (row.marks || []).map((mark) => "llm-mark-" + mark.replace(/\\W+/g, "-"));
      if (chosen.has(row.id)) classes.push("llm-chosen");
      tr.className = classes.join(" ");
      tr.setAttribute("aria-selected", chosen.has(row.id) ? "true" : "false");
      for (const column of columns) {
        const td = tr.insertCell();
        if (column.numeric) td.className = "llm-num";
        td.textContent = row.cells[column.key] ?? "";
        if (column.key === model.get("marks_column")) {
          for (const mark of row.marks || []) {
            const badge = document.createElement("span");
            badge.className = "llm-badge llm-badge-" + mark.replace(/\\W+/g, "-");
            badge.textContent = mark;
            td.appendChild(badge);
          }
        }
      }
      tr.addEventListener("click", (event) => choose(row.id, event, shown));
    }
  }

  for (const name of ["rows", "columns", "value", "sort", "empty"]) model.on("change:" + name, draw);
  draw();
}
export default { render };
"""

_CSS = Template("""
.llm-table { border-collapse: collapse; font-size: 12px; width: 100%; user-select: none; color: $text; }
.llm-table th { text-align: left; cursor: pointer; padding: 3px 8px; border-bottom: 2px solid $frame;
  background: $raised; position: sticky; top: 0; white-space: nowrap; }
.llm-table th:hover { background: $raised_more; }
.llm-table td { padding: 2px 8px; border-bottom: 1px solid $border; cursor: pointer; white-space: nowrap; }
.llm-table .llm-num { text-align: right; font-variant-numeric: tabular-nums; }
.llm-table tbody tr:hover { background: $raised; }
.llm-table tbody tr.llm-chosen { background: $chosen; }
.llm-table tbody tr.llm-chosen td:first-child { box-shadow: inset 3px 0 $brand; }
.llm-table .llm-empty { color: $muted; cursor: default; font-style: italic; }
.llm-badge { display: inline-block; margin-right: 4px; padding: 0 5px; border-radius: 8px; font-size: 11px;
  color: $text; background: $raised; border: 1px solid $faint; }
.llm-badge-in-use, .llm-badge-running { background: $brand_tint; border-color: $brand; }
.llm-badge-best { background: $success_tint; border-color: $success; }
.llm-badge-latest { background: $purple_tint; border-color: $purple; }
.llm-badge-failed { background: $error_tint; border-color: $error; }
""").substitute(
    text=TEXT,
    muted=MUTED,
    faint=FAINT,
    frame=FRAME,
    border=BORDER,
    raised=RAISED,
    raised_more=RAISED_MORE,
    chosen=tint("brand", 25),
    **{name: hue(name) for name in ("brand", "success", "purple", "error")},
    **{f"{name}_tint": tint(name, 30) for name in ("brand", "success", "purple", "error")},
)
# a metric where lower is better sorts ascending on the first click
_LOWER_IS_BETTER = re.compile(r"loss|perplexity|\bppl\b|error|\b[wc]er\b", re.IGNORECASE)


def lower_is_better(name: str) -> bool:
    """Whether a metric named so is better when lower (a loss, a perplexity, an error rate)."""
    return bool(_LOWER_IS_BETTER.search(name))


class Table(anywidget.AnyWidget):
    """Rows of text cells with ids. ``rows``: ``[{"id", "cells": {column: text}, "sort": {column:
    value}, "marks": [...]}]`` (``sort`` gives the value a column sorts by when its text would sort
    wrongly, e.g. a size or a time); ``columns``: ``[{"key", "label", "numeric", "first"}]``
    (``first``: the order of a first click, by default ``first_order``'s)."""

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    _css = traitlets.Unicode(_CSS).tag(sync=True)
    columns = traitlets.List(traitlets.Dict()).tag(sync=True)
    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    value = traitlets.List(traitlets.Unicode()).tag(sync=True)
    sort = traitlets.Dict().tag(sync=True)
    marks_column = traitlets.Unicode("").tag(sync=True)
    empty = traitlets.Unicode("(none)").tag(sync=True)

    @traitlets.validate("columns")
    def _first_order(self, proposal: dict[str, Any]) -> list[dict[str, Any]]:
        """Each column's order on its first click (``first``), unless it names one: the best first."""
        return [{"first": first_order(column), **column} for column in proposal["value"]]

    @traitlets.validate("value")
    def _known(self, proposal: dict[str, Any]) -> list[str]:
        """Only ids of rows shown can be selected (a row deleted meanwhile drops out)."""
        ids = {row["id"] for row in self.rows}
        return [chosen for chosen in proposal["value"] if chosen in ids]


def first_order(column: dict[str, Any]) -> str:
    """'ascending' or 'descending': how a column sorts on its first click. Text A to Z; a number
    best first, so a lower-is-better metric ascending and any other descending (largest first)."""
    if not column.get("numeric"):
        return "ascending"
    return "ascending" if lower_is_better(str(column.get("label", column.get("key", "")))) else "descending"
