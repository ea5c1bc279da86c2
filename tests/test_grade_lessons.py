"""The grader checks the lessons of the chapters (issue 16), not only the formulas.

Six wrong implementations that scored 11/11 before, each written as a student
would, fail exactly their own row, with a hint that names the mistake and
points to the chapter's section; the "expected" column states the property
checked, never the answer's formula; no hint gives a line of the solution.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from labcode.lab.checklist import CHAPTER_TITLES, CHECKLIST
from labcode.lab.checks import CHECKS, FUNCTION_SECTIONS, SECTIONS, narrow_decoder, see
from labcode.lab.runner import Result, check_function, format_report, grade_namespace, grade_path
from labcode.lab.sandbox import grade_submission
from labcode.likelihood import prior_log_weights
from test_grade import SOLUTION

ROOT = Path(__file__).resolve().parents[1]
EDITION = ROOT / "lab" / "lab3_student.ipynb"
NAMES = [item.name for item in CHECKLIST]

#: the β sweep of a student who follows the code hints (labcode's training loop) and reports as `elbo` the
#: objective the model was trained on
BETA_WEIGHTED_ELBO = '''
def analyze_beta_vae(data, betas=(0.0, 0.1, 1.0, 5.0, 10.0), *, steps, seed, config=None, device=None):
    cfg = replace(config or lc.VAEConfig(), steps=steps, seed=seed)
    results = {}
    for beta in betas:
        model = lc.VAE.from_config(cfg, device=device)
        lc.train_vae(model, data, steps=cfg.steps, lr=cfg.lr, beta=beta,
                     generator=torch.Generator().manual_seed(cfg.seed + 1))
        ev = lc.evaluate_vae(model, data, generator=torch.Generator().manual_seed(cfg.seed + 2))
        reconstruction = ev["reconstruction"].mean().item()
        kl_divergence = ev["kl_divergence"].mean().item()
        results[float(beta)] = {
            "reconstruction": reconstruction,
            "kl_divergence": kl_divergence,
            "elbo": reconstruction - beta * kl_divergence,      # the objective it was trained on
            "latent_samples": ev["z"],
            "reconstructions": ev["x_recon"],
        }
    return results
'''

#: issue 16's six wrong implementations that scored full marks: function -> (its source, a phrase of the hint
#: that names the mistake)
LESSONS = {
    "approximate_marginal_likelihood": ('''
def approximate_marginal_likelihood(decoder, x, n_samples, noise_std, *, generator=None):
    latent_dim = next(m for m in decoder.modules() if isinstance(m, torch.nn.Linear)).in_features
    with torch.no_grad():
        z = sample_prior(n_samples, latent_dim, generator=generator).to(x.dtype)
        log_lik = Normal(decoder(z)[None], noise_std).log_prob(x[:, None]).sum(dim=-1)
        return torch.exp(log_lik).mean(1)                 # an average of probabilities
''', "an average of probabilities overflows"),
    "monte_carlo_kl": ('''
def monte_carlo_kl(p_samples, p_log_prob, q_log_prob):
    return (p_log_prob(p_samples) - q_log_prob(p_samples)).mean()   # also over the coordinates
''', "averaged over the 3 coordinates"),
    "gaussian_kl_closed_form": ('''
def gaussian_kl_closed_form(mu1, sigma1, mu2, sigma2):      # tensors only
    return torch.log(sigma2 / sigma1) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5
''', "(torch.log, ...) was given a Python number"),
    "reparameterize": ('''
def reparameterize(mu, logvar, *, eps=None, generator=None):
    if eps is None:
        eps = torch.randn_like(mu)                          # the generator is ignored
    return mu + torch.exp(0.5 * logvar) * eps
''', "draw ε from the generator passed in"),
    "compute_elbo": ('''
def compute_elbo(model, x, *, generator=None):
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, generator=generator)
    x_recon = model.decode(z)
    reconstruction = reconstruction_loss(x, x_recon, torch.zeros_like(x_recon))   # unit variance
    kl_divergence = kl_regularization(mu, logvar)
    return {"elbo": reconstruction - kl_divergence, "reconstruction": reconstruction,
            "kl_divergence": kl_divergence, "mu": mu, "logvar": logvar, "z": z, "x_recon": x_recon}
''', "ignores the decoder's variance"),
    "analyze_beta_vae": (BETA_WEIGHTED_ELBO, "elbo reports the β-weighted training objective"),
}

#: the answers' formulas: none may appear in an expected text
FORMULAS = ("exp(", "log_prob", "logsumexp", "mu +", "μ +", "torch.", ".sum(", ".mean(", "randn", "sqrt(", "log(")
#: fragments of the solution's lines (today's TODO hints and the old grader's hints): none may appear in a hint
CODE = ("torch.randn(", "torch.exp(", "torch.logsumexp", "log_prob(", ".sum(", ".mean(", "generator=generator",
        "model.encode(", "model.decode(", "expand_as", "train_vae(", "math.log(", "reparameterize(",
        "kl_regularization(", "standard_normal_kl(", "0.5 *", "-0.5", "exp(0.5", "exp(logvar", "decoder(z)[")


def _namespace(*sources: str) -> dict:
    ns: dict = {"__name__": "__student__"}
    for source in sources:
        exec(source, ns)
    return ns


def _wrong(name: str) -> list[Result]:
    """The grading of SOLUTION with ``name`` replaced by its wrong implementation (and, for speed, the
    reference β sweep unless the β sweep is the one graded)."""
    fast = "" if name == "analyze_beta_vae" else "analyze_beta_vae = lc.analyze_beta_vae"
    return grade_namespace(_namespace(SOLUTION, LESSONS[name][0], fast))


def _assert_teaches(row: Result) -> None:
    """A failed row's texts: a hint that points to a chapter's section, no formula expected, no code hinted."""
    assert not row.passed
    assert re.search(r"see “[^”]+”, § \S", row.hint), row
    assert not [f for f in FORMULAS if f in row.expected], row
    assert not [c for c in CODE if c in row.hint], row


@pytest.mark.parametrize("name", sorted(LESSONS))
def test_wrong_implementation_fails_exactly_its_own_row(name):
    results = _wrong(name)
    assert [r.name for r in results if not r.passed] == [name], format_report(results)
    row = next(r for r in results if r.name == name)
    assert LESSONS[name][1] in row.hint, row
    _assert_teaches(row)
    for other in results:
        assert not [f for f in FORMULAS if f in other.expected], other
        assert other.name == name or len(other.expected) <= 40, other     # the width of the table's column


def test_the_measured_values_of_the_wrong_implementations():
    """What each wrong implementation gives, against the property (the report quotes these)."""
    rows = {name: next(r for r in _wrong(name) if r.name == name) for name in LESSONS if name != "analyze_beta_vae"}
    assert rows["approximate_marginal_likelihood"].measured == "p̂ = [inf, inf]"
    assert re.fullmatch(r"1\.1\d+ \(the KL / 3\)", rows["monte_carlo_kl"].measured)
    assert rows["gaussian_kl_closed_form"].measured.startswith("TypeError: log(): argument 'input'")
    assert rows["reparameterize"].measured == "z of 1000 draws, seed 1 twice: different"
    assert rows["compute_elbo"].measured.endswith("(unit decoder variance)")


@pytest.mark.parametrize(("log", "error", "phrase"), [
    ("math.log(sigma2 / sigma1)", "ValueError: only one element tensors", "math module (math.log, ...) was given a tensor"),
    ("(sigma2 / sigma1).log()", "AttributeError: 'float' object has no attribute 'log'", "was given a Python number"),
])
def test_closed_form_for_one_kind_of_argument_only(log, error, phrase):
    source = f'''
def gaussian_kl_closed_form(mu1, sigma1, mu2, sigma2):
    return {log} + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5
'''
    row = check_function("gaussian_kl_closed_form", _namespace(SOLUTION, source)["gaussian_kl_closed_form"])
    assert row.measured.startswith(error)
    assert phrase in row.hint
    _assert_teaches(row)


#: more likely mistakes the checks name: function -> (source, a phrase of the hint)
MISTAKES = {
    "sample_prior": ("def sample_prior(n_samples, latent_dim, *, generator=None, device=None):\n"
                     "    return torch.rand((n_samples, latent_dim), generator=generator)\n", "rand, not randn"),
    "reparameterize": ("def reparameterize(mu, logvar, *, eps=None, generator=None):\n"
                       "    if eps is None:\n"
                       "        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)\n"
                       "    return mu + torch.exp(logvar) * eps\n", "scaled by the variance instead of the standard"),
    "standard_normal_kl": ("def standard_normal_kl(mu, logvar):\n"
                           "    return 0.5 * (mu**2 + torch.exp(logvar) - 1 - logvar).mean(dim=-1)\n",
                           "the KL of independent coordinates is the sum"),
    "likelihood_given_z": ("def likelihood_given_z(decoder, x, z, noise_std):\n"
                           "    return Normal(decoder(z), noise_std).log_prob(x).sum(dim=-1)\n",
                           "not its logarithm"),
    "reconstruction_loss": ("def reconstruction_loss(x, x_mu, x_logvar):\n"
                            "    return 0.5 * (math.log(2 * math.pi) + x_logvar"
                            " + (x - x_mu) ** 2 * torch.exp(-x_logvar)).sum(dim=-1)\n", "do not negate it"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_likely_mistakes_are_named(name):
    source, phrase = MISTAKES[name]
    row = check_function(name, _namespace(SOLUTION, source)[name])
    assert phrase in row.hint, row
    _assert_teaches(row)


def test_a_function_that_raises_gets_the_chapter_section_not_a_code_line():
    ns = _namespace(SOLUTION, "def compute_elbo(model, x, *, generator=None):\n    raise RuntimeError('boom')\n")
    row = check_function("compute_elbo", ns["compute_elbo"])
    assert row.measured == "RuntimeError: boom"
    assert row.hint.endswith(see("two_terms")) and "“The ELBO”, § The two terms" in row.hint
    _assert_teaches(row)


def test_expected_texts_state_properties_not_formulas():
    texts = [expected for _, expected in CHECKS.values()]
    results = grade_path(EDITION)                       # the untouched edition: the texts of an empty run
    assert [r.measured for r in results] == ["not implemented (TODO)"] * len(NAMES)
    texts += [r.expected for r in results]
    assert max(len(expected) for _, expected in CHECKS.values()) <= 40      # the width of the table's column
    assert [t for t in texts if any(f in t for f in FORMULAS)] == []
    # the old texts fail this test
    assert any(f in "mu + exp(logvar/2)·eps; grads" for f in FORMULAS)
    assert any(f in "Normal log_prob summed, rtol 1e-5" for f in FORMULAS)


@pytest.mark.quick
def test_cited_sections_exist_in_the_chapters():
    for chapter, section in SECTIONS.values():
        headings = [line.lstrip("#").strip() for line in (ROOT / "book" / f"{chapter}.md").read_text().splitlines()
                    if re.match(r"#{2,3} ", line)]
        assert section in headings, (chapter, section)
        assert chapter in CHAPTER_TITLES
    assert set(FUNCTION_SECTIONS) == set(NAMES) and set(FUNCTION_SECTIONS.values()) <= set(SECTIONS)


def test_narrow_decoder_needs_log_space():
    """The float32 point of the marginal-likelihood check: single densities overflow, p(x) does not."""
    decoder, sigma, x, exact = narrow_decoder()
    largest = torch.finfo(torch.float32).max
    assert bool((exact < largest / 3).all()) and bool((exact > largest / 10).all())
    # the largest log p(x | z_k) of the check's prior draws: about 90, beyond float32's e^88.72
    log_w = prior_log_weights(decoder, x, 100_000, sigma, generator=torch.Generator().manual_seed(16)).max(1).values
    assert bool((log_w > math.log(largest) + 1).all()), log_w
    assert bool(torch.isinf(log_w.exp()).all())
    assert bool((log_w < 90.001).all())                                  # the decoder's peak, e^90


def test_wrong_implementations_fail_in_the_grader_worker_too(tmp_path):
    """The sandboxed grader (the student's functions in a worker process) names the same mistakes."""
    fast = SOLUTION[: SOLUTION.index("def analyze_beta_vae")]
    path = tmp_path / "wrong.py"
    path.write_text("\n\n".join([fast, *(LESSONS[n][0] for n in LESSONS if n != "analyze_beta_vae")]))
    graded = grade_submission(path, timeout=120, memory_mb=2048)
    rows = {r.name: r for r in graded.results}
    assert graded.status == "graded"
    assert {n for n, r in rows.items() if not r.passed} == set(LESSONS), format_report(graded.results)
    for name in LESSONS:
        if name != "analyze_beta_vae":
            assert LESSONS[name][1] in rows[name].hint, rows[name]
            _assert_teaches(rows[name])
    assert rows["analyze_beta_vae"].measured == "not defined"
