"""Tests of the autograder (labcode.grade) and the generated student edition (lab/).

The reference implementation scores 11/11, a solution written from the
edition's hints scores 11/11, the untouched edition scores 0/11 without
crashing, and each planted bug fails exactly its own check: the grader
checks every function with the other ten replaced by the references.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

import labcode as lc
from labcode.grade import main
from labcode.lab.checklist import CHECKLIST
from labcode.lab.runner import (
    Result,
    format_report,
    grade_namespace,
    grade_path,
    grade_path_verbose,
    isolated,
    run_cells,
)

ROOT = Path(__file__).resolve().parents[1]

EDITION = ROOT / "lab" / "lab3_student.ipynb"
NAMES = [item.name for item in CHECKLIST]

#: a student's solution, written from the hints of the student edition; it
#: calls the other checklist functions by name, as students do
SOLUTION = '''
import math
from dataclasses import replace

import torch
from torch.distributions import Normal

import labcode as lc


def sample_prior(n_samples, latent_dim, *, generator=None, device=None):
    z = torch.randn((n_samples, latent_dim), generator=generator)
    return z.to(device)


def likelihood_given_z(decoder, x, z, noise_std):
    mean = decoder(z)
    return Normal(mean, noise_std).log_prob(x).sum(dim=-1).exp()


def approximate_marginal_likelihood(decoder, x, n_samples, noise_std, *, generator=None):
    if hasattr(decoder, "latent_dim") and hasattr(decoder, "decode"):     # a whole lc.VAE
        latent_dim, decode = decoder.latent_dim, decoder.decode
    else:
        latent_dim = next(m for m in decoder.modules() if isinstance(m, torch.nn.Linear)).in_features
        decode = decoder
    with torch.no_grad():
        z = sample_prior(n_samples, latent_dim, generator=generator).to(x.dtype)
        log_lik = Normal(decode(z)[None], noise_std).log_prob(x[:, None]).sum(dim=-1)
        log_p = torch.logsumexp(log_lik, dim=1) - math.log(n_samples)
    return torch.exp(log_p)


def monte_carlo_kl(p_samples, p_log_prob, q_log_prob):
    log_ratio = p_log_prob(p_samples) - q_log_prob(p_samples)
    return log_ratio.reshape(log_ratio.shape[0], -1).sum(dim=1).mean()


def gaussian_kl_closed_form(mu1, sigma1, mu2, sigma2):
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(v) for v in (mu1, sigma1, mu2, sigma2))
    return torch.log(sigma2 / sigma1) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5


def standard_normal_kl(mu, logvar):
    return 0.5 * (mu**2 + torch.exp(logvar) - 1 - logvar).sum(dim=-1)


def reparameterize(mu, logvar, *, eps=None, generator=None):
    std = torch.exp(0.5 * logvar)
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return mu + std * eps


def reconstruction_loss(x, x_mu, x_logvar):
    return (-0.5 * (math.log(2 * math.pi) + x_logvar + (x - x_mu) ** 2 * torch.exp(-x_logvar))).sum(dim=-1)


def kl_regularization(mu, logvar):
    return standard_normal_kl(mu, logvar)


def compute_elbo(model, x, *, generator=None):
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, generator=generator)
    x_recon = model.decode(z)
    reconstruction = reconstruction_loss(x, x_recon, model.decoder_logvar.expand_as(x_recon))
    kl_divergence = kl_regularization(mu, logvar)
    return {"elbo": reconstruction - kl_divergence, "reconstruction": reconstruction,
            "kl_divergence": kl_divergence, "mu": mu, "logvar": logvar, "z": z, "x_recon": x_recon}


def analyze_beta_vae(data, betas=(0.0, 0.1, 1.0, 5.0, 10.0), *, steps, seed, config=None, device=None):
    cfg = replace(config or lc.VAEConfig(), steps=steps, seed=seed)
    results = {}
    for beta in betas:
        model = lc.VAE.from_config(cfg, device=device)
        optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        for _ in range(cfg.steps):
            out = compute_elbo(model, data, generator=generator)
            loss = -out["reconstruction"].mean() + beta * out["kl_divergence"].mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        ev = lc.evaluate_vae(model, data, generator=torch.Generator().manual_seed(cfg.seed + 2))
        results[float(beta)] = {
            "reconstruction": ev["reconstruction"].mean().item(),
            "kl_divergence": ev["kl_divergence"].mean().item(),
            "elbo": ev["elbo"].mean().item(),
            "latent_samples": ev["z"],
            "reconstructions": ev["x_recon"],
        }
    return results
'''

#: the classic slips, each replacing one function of SOLUTION
PLANTED_BUGS = {
    "gaussian_kl_closed_form": '''
def gaussian_kl_closed_form(mu1, sigma1, mu2, sigma2):   # log(σ₁/σ₂): wrong sign
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(v) for v in (mu1, sigma1, mu2, sigma2))
    return torch.log(sigma1 / sigma2) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5
''',
    "reparameterize": '''
def reparameterize(mu, logvar, *, eps=None, generator=None):
    std = torch.exp(logvar)                              # the variance used as standard deviation
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
    return mu + std * eps
''',
    "standard_normal_kl": '''
def standard_normal_kl(mu, logvar):                      # not summed over the latent dimension
    return 0.5 * (mu**2 + torch.exp(logvar) - 1 - logvar)
''',
    "approximate_marginal_likelihood": '''
def approximate_marginal_likelihood(decoder, x, n_samples, noise_std, *, generator=None):
    latent_dim = next(m for m in decoder.modules() if isinstance(m, torch.nn.Linear)).in_features
    with torch.no_grad():
        z = sample_prior(n_samples, latent_dim, generator=generator).to(x.dtype)
        lik = Normal(decoder(z)[None], noise_std).log_prob(x[:, None]).sum(dim=-1).exp()
        log_p = torch.logsumexp(lik, dim=1) - math.log(n_samples)   # likelihoods where logs belong
    return torch.exp(log_p)
''',
}


def _namespace(*sources: str) -> dict:
    ns: dict = {"__name__": "__student__"}
    for source in sources:
        exec(source, ns)
    return ns


def _failed(results: list[Result]) -> list[str]:
    return [r.name for r in results if not r.passed]


def _grade_cli(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labcode.grade", str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_reference_scores_11_of_11():
    results = grade_namespace({item.name: item.reference for item in CHECKLIST})
    assert [r.name for r in results] == NAMES
    assert _failed(results) == [], format_report(results)
    assert format_report(results).endswith("Score: 11/11")


def test_solution_from_the_hints_scores_11_of_11_on_the_command_line(tmp_path):
    module = tmp_path / "solution.py"
    module.write_text(SOLUTION)
    proc = _grade_cli(module)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" pass ") + proc.stdout.count(" pass\n") == 11
    assert proc.stdout.rstrip().endswith("Score: 11/11")


def test_untouched_student_edition_scores_0_of_11():
    results, errors = grade_path_verbose(EDITION)
    assert errors == []                                     # the stubs raise only when called
    assert [r.name for r in results] == NAMES
    assert _failed(results) == NAMES
    assert all(r.measured == "not implemented (TODO)" for r in results)
    assert _failed(grade_path(EDITION.with_suffix(".md"))) == NAMES


def test_untouched_student_edition_on_the_command_line():
    proc = _grade_cli(EDITION)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["function", "measured", "expected"]
    for name in NAMES:
        row = next(line for line in lines if line.startswith(name + " "))
        assert row.split()[1] == "FAIL"
        assert "replace the TODO body" in row
    assert lines[-1] == "Score: 0/11"
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bug", sorted(PLANTED_BUGS))
def test_planted_bug_fails_exactly_its_own_check(bug):
    # the reference β sweep (trains the three models at once) keeps this test fast
    ns = _namespace(SOLUTION, PLANTED_BUGS[bug], "analyze_beta_vae = lc.analyze_beta_vae")
    results = grade_namespace(ns)
    assert _failed(results) == [bug], format_report(results)
    failed = next(r for r in results if not r.passed)
    assert failed.hint and failed.measured and failed.expected


def test_isolation_replaces_only_the_other_checklist_functions():
    ns = _namespace(SOLUTION, PLANTED_BUGS["standard_normal_kl"])
    kl_reg = isolated("kl_regularization", ns)
    mu, logvar = torch.zeros(3, 2), torch.zeros(3, 2)
    assert kl_reg(mu, logvar).shape == (3,)                 # uses the reference standard_normal_kl
    assert ns["kl_regularization"](mu, logvar).shape == (3, 2)   # the student's own still uses the bug
    own = isolated("standard_normal_kl", ns)
    assert own(mu, logvar).shape == (3, 2)
    assert own.__globals__["kl_regularization"] is lc.kl_regularization
    assert isolated("reparameterize", ns).__kwdefaults__ == {"eps": None, "generator": None}


def test_cell_errors_magics_and_crashes_do_not_stop_grading(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\n!pip install nothing\nimport torch\nimport labcode as lc"),
        nbformat.v4.new_code_cell("raise RuntimeError('a broken cell')"),
        nbformat.v4.new_code_cell("print('noise')\n"
                                  "def standard_normal_kl(mu, logvar):\n"
                                  "    return 0.5 * (mu**2 + torch.exp(logvar) - 1 - logvar).sum(dim=-1)\n"),
        nbformat.v4.new_code_cell("def monte_carlo_kl(p_samples, p_log_prob, q_log_prob):\n    return 1 / 0\n"),
        nbformat.v4.new_code_cell("sample_prior = 3"),
    ]
    path = tmp_path / "student.ipynb"
    nbformat.write(nb, path)
    results, errors = grade_path_verbose(path)
    assert [(e.index, e.error) for e in errors] == [(2, "RuntimeError: a broken cell")]
    rows = {r.name: r for r in results}
    assert rows["standard_normal_kl"].passed
    assert not rows["monte_carlo_kl"].passed and rows["monte_carlo_kl"].measured.startswith("ZeroDivisionError")
    assert rows["sample_prior"].measured.startswith("not a function")
    assert rows["kl_regularization"].measured == "not defined"
    assert _failed(results) == [n for n in NAMES if n != "standard_normal_kl"]
    report = format_report(results, errors)
    assert "cell 2 raised RuntimeError" in report and report.endswith("Score: 1/11")


def test_self_grading_cell_does_not_grade_twice():
    ns, errors = run_cells(["from labcode.grade import grade_namespace\ninner = grade_namespace(globals())"])
    assert errors == [] and ns["inner"] == []


def test_unknown_or_missing_files_are_refused(tmp_path, capsys):
    path = tmp_path / "answers.txt"
    path.write_text("")
    assert main([str(path)]) == 1                          # graded: nothing passes, and nothing ran
    out = capsys.readouterr().out
    assert out.startswith("status: not-a-notebook: answers.txt is not a notebook: submit a .ipynb, a MyST .md or a .py")
    assert out.rstrip().endswith("Score: 0/11")
    assert main([str(tmp_path / "missing.ipynb")]) == 2
    assert "no such file" in capsys.readouterr().err
