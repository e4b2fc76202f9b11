"""A drop-down whose choices can be disabled one by one (ipywidgets' ``Dropdown`` disables only the
whole control): a disabled choice stays in the list, greyed, and cannot be chosen.

An anywidget component (a DOM ``<select>`` drawn by a few lines of JavaScript); labels are set as
text, never as HTML. ``value`` is the chosen option's value, like ``Dropdown``'s.
"""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets

from llm_magics.core.theme import FAINT, FRAME, PAGE, TEXT

_ESM = """
function render({ model, el }) {
  const label = document.createElement("label");
  const select = document.createElement("select");
  el.classList.add("llm-choice");
  el.append(label, select);

  function draw() {
    label.textContent = model.get("description");
    label.hidden = !model.get("description");
    select.replaceChildren(...model.get("options").map((option) => {
      const element = new Option(option.label, option.value);
      element.disabled = option.disabled === true;
      return element;
    }));
    select.value = model.get("value");
  }

  select.addEventListener("change", () => {
    model.set("value", select.value);
    model.save_changes();
  });
  model.on("change:options", draw);
  model.on("change:description", draw);
  model.on("change:value", () => { select.value = model.get("value"); });
  draw();
}
export default { render };
"""

_CSS = f"""
.llm-choice {{ display: flex; align-items: center; gap: 8px; margin: 2px 4px; }}
.llm-choice label {{ font-size: var(--jp-widgets-font-size, 13px); }}
.llm-choice select {{ height: var(--jp-widgets-inline-height, 28px); font-size: var(--jp-widgets-font-size, 13px);
  color: var(--jp-widgets-color, {TEXT}); background: var(--jp-widgets-input-background-color, {PAGE});
  border: 1px solid var(--jp-widgets-input-border-color, {FRAME}); }}
.llm-choice option:disabled {{ color: {FAINT}; }}
"""


class Choice(anywidget.AnyWidget):
    """``options``: ``[{"value", "label", "disabled"}]``; ``value``: an enabled option's value."""

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    _css = traitlets.Unicode(_CSS).tag(sync=True)
    options = traitlets.List(traitlets.Dict()).tag(sync=True)
    value = traitlets.Unicode("").tag(sync=True)
    description = traitlets.Unicode("").tag(sync=True)

    @traitlets.validate("value")
    def _enabled(self, proposal: dict[str, Any]) -> str:
        """Only an enabled option can be chosen: the same rule in the kernel as in the page."""
        enabled = [option["value"] for option in self.options if not option.get("disabled")]
        if proposal["value"] not in enabled:
            raise traitlets.TraitError(f"'{proposal['value']}' is not an enabled choice: {', '.join(enabled)}")
        return proposal["value"]
