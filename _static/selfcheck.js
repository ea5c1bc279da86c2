/* Self-check questions (labcode.selfcheck): checks a reader's answer in the page, offline.
 *
 * Each <form class="selfcheck-question"> carries its answer in data attributes written by the build:
 * numeric questions data-answer and data-tol (a reply within tol is right), multiple-choice questions
 * data-correct (the index of the right option). A wrong reply shows the question's hint; the verdict is
 * written into a role="status" region, so screen readers announce it. "Show the answer" appears after
 * the first attempt.
 */
(function () {
  "use strict";

  /* A number as readers type it: 0.25, .25, -1.5e-3, 2.5 × 10^-3 is not accepted, 24% is 0.24,
   * a decimal comma (0,25) and thousands separators (10,000) are understood, − is a minus. */
  function parseNumber(text) {
    var s = text.trim().replace(/[\u2212\u2013]/g, "-").replace(/[\s_\u2009\u202f]/g, "");
    var percent = s.endsWith("%");
    if (percent) s = s.slice(0, -1);
    var comma = s.match(/^([-+]?\d+),(\d+)$/);
    if (comma && (comma[2].length !== 3 || /^[-+]?0$/.test(comma[1]))) {
      s = comma[1] + "." + comma[2];
    } else {
      s = s.replace(/(\d),(?=\d{3}(?!\d))/g, "$1");
    }
    if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(s)) return NaN;
    var value = parseFloat(s);
    return percent ? value / 100 : value;
  }

  function say(form, state, message) {
    var verdict = form.querySelector(".selfcheck-verdict");
    var hint = form.querySelector(".selfcheck-hint");
    form.dataset.state = state;
    verdict.textContent = message;
    if (hint) hint.hidden = state !== "wrong";
    var answer = form.querySelector(".selfcheck-answer");
    if (answer && state !== "invalid") answer.hidden = false;
  }

  function checkNumeric(form) {
    var input = form.querySelector(".selfcheck-input");
    var text = input.value;
    if (!text.trim()) {
      say(form, "invalid", "Type a number first.");
      return;
    }
    var value = parseNumber(text);
    if (!isFinite(value)) {
      say(form, "invalid", "\u201c" + text.trim() + "\u201d is not a number; type one such as 0.25 or 2.5e-3.");
      return;
    }
    var answer = parseFloat(form.dataset.answer);
    var tol = parseFloat(form.dataset.tol);
    if (Math.abs(value - answer) <= tol * (1 + 1e-9)) {
      say(form, "right", "Right: the build computed " + form.dataset.display + ".");
    } else {
      say(form, "wrong", "Not quite: " + text.trim() + " is not within " + form.dataset.tolText + " of the answer.");
    }
  }

  function checkChoice(form) {
    var chosen = form.querySelector("input[type=radio]:checked");
    if (!chosen) {
      say(form, "invalid", "Choose an option first.");
      return;
    }
    if (chosen.value === form.dataset.correct) {
      say(form, "right", "Right.");
    } else {
      say(form, "wrong", "Not quite.");
    }
  }

  function setUp(form) {
    var answer = form.querySelector(".selfcheck-answer");
    if (answer) answer.hidden = true;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (form.dataset.kind === "numeric") checkNumeric(form);
      else checkChoice(form);
    });
    /* a new reply clears the old verdict */
    form.addEventListener("input", function () {
      if (form.dataset.state) {
        delete form.dataset.state;
        form.querySelector(".selfcheck-verdict").textContent = "";
        var hint = form.querySelector(".selfcheck-hint");
        if (hint) hint.hidden = true;
      }
    });
  }

  function init() {
    document.querySelectorAll("form.selfcheck-question").forEach(setUp);
    document.documentElement.classList.add("selfcheck-ready");
  }

  window.labcodeSelfcheck = { parseNumber: parseNumber };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
