"""Self-check questions whose answers come from the build.

A chapter ends a section with a few questions that a reader answers in the page and gets
immediate feedback, offline. A numeric answer is a value the chapter computed and glued
(``glue_key`` names it, and ``tests/test_selfcheck.py`` checks that the page's answer *is* that
glued value); the correct option of a multiple-choice question is chosen by code from
computed facts, never typed. Usage, in a ``remove-input`` cell at the end of a section::

    from labcode.selfcheck import Choice, Numeric, SelfCheck

    SelfCheck(
        Numeric("What is $\\KL(p\\,\\|\\,q)$ for the lab's pair?", kl_pq, tol=0.005,
                hint="Use {prf:ref}`kl-prop-gauss`.", glue_key="kl_pq"),
        Choice("Which direction is larger?", ["$\\KL(p\\|q)$", "$\\KL(q\\|p)$"],
               "$\\KL(p\\|q)$" if kl_pq > kl_qp else "$\\KL(q\\|p)$", hint="See {numref}`fig-kl-asym`."),
    )

Prompts, options and hints are MyST markdown: ``$math$`` and roles (``{prf:ref}``,
``{numref}``, ``{eq}``, ``{term}``) are resolved by the book's build. A :class:`SelfCheck` is
displayed three ways:

- ``text/markdown`` (chosen by the book's HTML and LaTeX builders, see ``_config.yml``): MyST
  with raw HTML form controls. In the HTML page ``_static/selfcheck.js`` does the checking
  (an answer within ``tol`` is accepted, a wrong one rejected with the hint, read out by an
  ``aria-live`` region); the LaTeX builder drops the form controls and prints the questions,
  then the answers and hints in small print.
- ``text/html`` (Jupyter, Colab): the questions, each with a "Show the answer" disclosure.
- ``text/plain``: the questions and their answers.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Choice", "Numeric", "SelfCheck"]

#: a MyST role with its content: {prf:ref}`label`, {numref}`Figure %s <fig-x>`, {term}`KL divergence`
_ROLE = re.compile(r"\{[\w:-]+\}`([^`]*)`")
_EXPLICIT_TARGET = re.compile(r"^(.*?)\s*<([^<>]+)>$")
_GLUE_KEY = re.compile(r"^[A-Za-z_][\w.-]*$")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    if re.search(r"^\s*<", value, re.M):
        raise ValueError(f"{name} must not start a line with '<' (it would be read as raw HTML), got {value!r}")
    return value.strip()


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a Python int or float (glue Python numbers, not tensors), got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _plain(markdown: str) -> str:
    """A MyST snippet for readers without the book's build: roles become their text or target."""
    def role(m: re.Match) -> str:
        content = m.group(1)
        explicit = _EXPLICIT_TARGET.match(content)
        return explicit.group(1) if explicit and explicit.group(1) else content
    return _ROLE.sub(role, markdown)


def _decimals(tol: float) -> int:
    """Decimals that resolve a tolerance: one more than its leading digit's place (tol 0.005 -> 4)."""
    return max(0, 1 - math.floor(math.log10(tol)))


@dataclass(frozen=True)
class Numeric:
    """A question whose answer is a number: a reply ``x`` is right when ``|x - answer| <= tol``.

    ``answer`` must be the value the chapter glued under ``glue_key`` (the build test compares
    them), ``tol`` > 0 an absolute tolerance that fits the precision the prompt asks for,
    ``hint`` a MyST sentence that teaches (points to the theorem or figure by reference).
    """

    prompt: str
    answer: float
    tol: float
    hint: str
    glue_key: str

    def __init__(self, prompt: str, answer: float, *, tol: float, hint: str, glue_key: str) -> None:
        object.__setattr__(self, "prompt", _text("prompt", prompt))
        object.__setattr__(self, "answer", _real("answer", answer))
        tol = _real("tol", tol)
        if tol <= 0:
            raise ValueError(f"tol must be > 0, got {tol}")
        object.__setattr__(self, "tol", tol)
        object.__setattr__(self, "hint", _text("hint", hint))
        if not isinstance(glue_key, str):
            raise TypeError(f"glue_key must be a str, got {type(glue_key).__name__}")
        if not _GLUE_KEY.match(glue_key):
            raise ValueError(f"glue_key must be a glue key (letters, digits, '_', '.', '-'), got {glue_key!r}")
        object.__setattr__(self, "glue_key", glue_key)

    @property
    def display(self) -> str:
        """The answer with as many decimals as the tolerance resolves."""
        return f"{self.answer:.{_decimals(self.tol)}f}"

    @property
    def tolerance_text(self) -> str:
        """The tolerance to two significant digits, as readers are told it (±0.0005, ±9.9, ±1100)."""
        return f"±{float(f'{self.tol:.2g}'):g}"


@dataclass(frozen=True)
class Choice:
    """A multiple-choice question with one correct option.

    ``correct`` must be one of ``options`` (compute it: ``"larger" if a > b else "smaller"``);
    options are distinct MyST snippets, at least two, at most 26.
    """

    prompt: str
    options: tuple[str, ...]
    correct: str
    hint: str

    def __init__(self, prompt: str, options: Sequence[str], correct: str, *, hint: str) -> None:
        object.__setattr__(self, "prompt", _text("prompt", prompt))
        if isinstance(options, str) or not isinstance(options, Sequence):
            raise TypeError(f"options must be a sequence of str, got {type(options).__name__}")
        opts = tuple(_text(f"options[{i}]", o) for i, o in enumerate(options))
        if not 2 <= len(opts) <= len(_LETTERS):
            raise ValueError(f"options must hold 2 to {len(_LETTERS)} choices, got {len(opts)}")
        if len(set(opts)) != len(opts):
            raise ValueError(f"options must be distinct, got {list(opts)}")
        object.__setattr__(self, "options", opts)
        if not isinstance(correct, str):
            raise TypeError(f"correct must be a str (one of the options), got {type(correct).__name__}")
        if correct.strip() not in opts:
            raise ValueError(f"correct must be one of the options {list(opts)}, got {correct!r}")
        object.__setattr__(self, "correct", correct.strip())
        object.__setattr__(self, "hint", _text("hint", hint))

    @property
    def correct_index(self) -> int:
        return self.options.index(self.correct)

    @property
    def display(self) -> str:
        return f"({_LETTERS[self.correct_index]})"


Question = Numeric | Choice


class SelfCheck:
    """A block of self-check questions, displayed at the end of a section (see the module docstring)."""

    def __init__(self, *questions: Question) -> None:
        if not questions:
            raise ValueError("questions must not be empty: give at least one Numeric or Choice")
        for i, q in enumerate(questions):
            if not isinstance(q, (Numeric, Choice)):
                raise TypeError(f"questions[{i}] must be a Numeric or a Choice, got {type(q).__name__}")
        self.questions: tuple[Question, ...] = questions
        digest = hashlib.sha1(repr(questions).encode()).hexdigest()[:10]
        self.id = f"selfcheck-{digest}"   # deterministic: the same questions give the same page

    # -- the book (HTML and LaTeX builders, MyST with raw HTML controls) -----------------------
    def _repr_markdown_(self) -> str:
        parts = [f'<div class="selfcheck" id="{self.id}" role="group" aria-label="Check yourself">',
                 "**Check yourself.**"]
        for n, q in enumerate(self.questions, 1):
            parts += self._question_markdown(n, q)
        parts += ["</div>", ":::{only} latex", "```{raw} latex\n\\begingroup\\footnotesize\n```"]
        answers = []
        for n, q in enumerate(self.questions, 1):
            tol = f" ({q.tolerance_text})" if isinstance(q, Numeric) else ""
            answers.append(f"**{n}.** {q.display}{tol}. {q.hint}")
        parts += ["*Answers.* " + " ".join(answers), "```{raw} latex\n\\par\\endgroup\n```", ":::"]
        return "\n\n".join(parts)

    def _question_markdown(self, n: int, q: Question) -> list[str]:
        qid = f"{self.id}-{n}"
        esc = html.escape
        if isinstance(q, Numeric):
            data = (f'data-kind="numeric" data-answer="{q.answer!r}" data-tol="{q.tol:.12g}" '
                    f'data-display="{esc(q.display)}" data-tol-text="{esc(q.tolerance_text)}" data-glue-key="{esc(q.glue_key)}"')
        else:
            data = f'data-kind="choice" data-correct="{q.correct_index}" data-display="{esc(q.display)}"'
        parts = [f'<form class="selfcheck-question" id="{qid}" {data} novalidate>',
                 f'<div class="selfcheck-prompt" id="{qid}-prompt">',
                 f"**{n}.** {q.prompt}",
                 "</div>"]
        if isinstance(q, Numeric):
            parts.append(
                f'<div class="selfcheck-controls"><input type="text" class="selfcheck-input" id="{qid}-input" '
                f'inputmode="decimal" autocomplete="off" spellcheck="false" aria-labelledby="{qid}-prompt" '
                f'aria-describedby="{qid}-tol"> <button type="submit" class="selfcheck-check">Check</button> '
                f'<span class="selfcheck-tol" id="{qid}-tol">answers within {esc(q.tolerance_text)} count</span></div>')
        else:
            parts.append(f'<div class="selfcheck-options" role="radiogroup" aria-labelledby="{qid}-prompt">')
            for i, option in enumerate(q.options):
                parts += ['<label class="selfcheck-option">',
                          f'<input type="radio" name="{qid}-choice" value="{i}">',
                          f"({_LETTERS[i]}) {option}",
                          "</label>"]
            parts += ["</div>", '<div class="selfcheck-controls"><button type="submit" class="selfcheck-check">Check</button></div>']
        parts += ['<div class="selfcheck-feedback" role="status" aria-live="polite"><p class="selfcheck-verdict"></p>'
                  '<div class="selfcheck-hint" hidden>',
                  ":::{only} html", f"**Hint.** {q.hint}", ":::",
                  "</div></div>",
                  f'<details class="selfcheck-answer"><summary>Show the answer</summary><p>{esc(q.display)}</p></details>',
                  "</form>"]
        return parts

    # -- notebooks (Jupyter, Colab): no site script, so each answer sits behind a disclosure ---
    def _repr_html_(self) -> str:
        esc = html.escape
        items = []
        for q in self.questions:
            body = esc(_plain(q.prompt))
            if isinstance(q, Choice):
                body += "<br>" + "<br>".join(f"({_LETTERS[i]}) {esc(_plain(o))}" for i, o in enumerate(q.options))
            tol = f" ({esc(q.tolerance_text)})" if isinstance(q, Numeric) else ""
            items.append(f"<li>{body}<details><summary>Show the answer</summary>"
                         f"<p>{esc(q.display)}{tol}. {esc(_plain(q.hint))}</p></details></li>")
        return f'<div class="selfcheck"><p><strong>Check yourself.</strong></p><ol>{"".join(items)}</ol></div>'

    def __repr__(self) -> str:
        lines = ["Check yourself."]
        for n, q in enumerate(self.questions, 1):
            lines.append(f"{n}. {_plain(q.prompt)}")
            if isinstance(q, Choice):
                lines += [f"   ({_LETTERS[i]}) {_plain(o)}" for i, o in enumerate(q.options)]
        lines.append("Answers: " + "; ".join(
            f"{n}. {q.display}" + (f" ({q.tolerance_text})" if isinstance(q, Numeric) else "")
            for n, q in enumerate(self.questions, 1)))
        return "\n".join(lines)
