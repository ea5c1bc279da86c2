"""Tests of the grader's end-to-end row (labcode.lab.endtoend): the student's eleven functions trained and evaluated together.

A correct solution passes the row in process and in the sandbox; a bug in one
function fails its own row of the eleven and the end-to-end row, and no other
row; a solution whose ``compute_elbo`` calls ``lc.reparameterize`` passes its
eleven rows and fails only the end-to-end row, which names the reference; a
missing or untouched function fails the row at once. Each stage of the check
is shown to fail on a pipeline result that is wrong in that stage only.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import torch

import labcode as lc
from labcode.lab.batch import grade_class, main
from labcode.lab.endtoend import (
    END_TO_END,
    PLAN,
    TITLE,
    TOLERANCES,
    check_end_to_end,
    run_pipeline,
    watch_references,
)
from labcode.lab.runner import Grades, format_report, grade_end_to_end, grade_namespace
from test_grade import PLANTED_BUGS, SOLUTION  # SOLUTION: correct in every lesson of Step 13
from test_grade_lessons import LESSONS

#: compute_elbo written out, but with labcode's reparameterize instead of the student's
ELBO_WITH_REFERENCE = '''
def compute_elbo(model, x, *, generator=None):
    mu, logvar = model.encode(x)
    z = lc.reparameterize(mu, logvar, generator=generator)
    x_recon = model.decode(z)
    reconstruction = reconstruction_loss(x, x_recon, model.decoder_logvar.expand_as(x_recon))
    kl_divergence = kl_regularization(mu, logvar)
    return {"elbo": reconstruction - kl_divergence, "reconstruction": reconstruction,
            "kl_divergence": kl_divergence, "mu": mu, "logvar": logvar, "z": z, "x_recon": x_recon}
'''

#: a function left as the student edition's TODO
TODO = '''
def reconstruction_loss(x, x_mu, x_logvar):
    raise NotImplementedError("TODO: implement reconstruction_loss")
'''

#: a marginal likelihood that reads the latent size from the first nn.Linear and calls the decoder directly: right for a
#: bare network (its own row passes), wrong for the whole VAE the book (and this row) passes
BARE_NETWORK_ONLY = '''
def approximate_marginal_likelihood(decoder, x, n_samples, noise_std, *, generator=None):   # a bare network only
    latent_dim = next(m for m in decoder.modules() if isinstance(m, torch.nn.Linear)).in_features
    with torch.no_grad():
        z = sample_prior(n_samples, latent_dim, generator=generator).to(x.dtype)
        log_lik = Normal(decoder(z)[None], noise_std).log_prob(x[:, None]).sum(dim=-1)
        log_p = torch.logsumexp(log_lik, dim=1) - math.log(n_samples)
    return torch.exp(log_p)
'''

#: issue 16's lesson bugs (test_grade_lessons' wrong implementations) and the stage of this row each one fails
LESSON_STAGES = {"monte_carlo_kl": "KL", "reparameterize": "reproducibility", "compute_elbo": "training",
                 "analyze_beta_vae": "β sweep"}
LESSON_BUGS = {name: (stage, LESSONS[name][0]) for name, stage in LESSON_STAGES.items()}
LESSON_BUGS["approximate_marginal_likelihood"] = ("marginal likelihood", BARE_NETWORK_ONLY)


def _namespace(*sources: str) -> dict:
    ns: dict = {"__name__": "__student__"}
    for source in sources:
        exec(source, ns)
    return ns


def _failed(results: list) -> list[str]:
    return [r.name for r in results if not r.passed]


@pytest.fixture(scope="module")
def pipeline() -> dict:
    """The correct solution's pipeline, run once in process (about 1.5 s)."""
    return run_pipeline(_namespace(SOLUTION))


# --------------------------------------------------------------------------- in process

def test_correct_solution_passes_the_row_in_process():
    results = grade_namespace(_namespace(SOLUTION))
    assert isinstance(results, Grades) and _failed(results) == [], format_report(results)
    row = results.end_to_end
    assert row.name == END_TO_END and row.passed, row
    report = format_report(results)
    assert report.splitlines()[-2].startswith(f"{TITLE}: pass: trained ELBO")
    assert report.endswith("Score: 11/11")                        # the score counts the eleven only
    assert row.seconds < 20


@pytest.mark.parametrize("bug", ["reparameterize", "standard_normal_kl"])
def test_one_planted_bug_fails_its_own_row_and_the_end_to_end_row(bug):
    results = grade_namespace(_namespace(SOLUTION, PLANTED_BUGS[bug]))
    assert _failed(results) == [bug], format_report(results)
    assert not results.end_to_end.passed
    assert f"{TITLE}: FAIL: training: " in format_report(results)


@pytest.mark.parametrize("bug", sorted(PLANTED_BUGS))
def test_every_planted_bug_fails_the_end_to_end_row(bug):
    row = grade_end_to_end(_namespace(SOLUTION, PLANTED_BUGS[bug]))
    assert not row.passed and row.hint, row


@pytest.mark.parametrize("bug", sorted(LESSON_BUGS))
def test_each_lesson_fails_the_end_to_end_row_in_its_stage(bug):
    stage, source = LESSON_BUGS[bug]
    row = grade_end_to_end(_namespace(SOLUTION, source))
    assert not row.passed and row.measured.startswith(f"{stage}: "), row
    assert bug in row.hint, row


def test_calling_a_reference_fails_only_the_end_to_end_row():
    ns = _namespace(SOLUTION, ELBO_WITH_REFERENCE)
    row = grade_end_to_end(ns)
    assert not row.passed
    assert row.measured == "uses labcode's own code: your compute_elbo calls labcode's labcode.elbo.reparameterize"
    # a name bound to a reference fails at once, before anything trains
    start = time.perf_counter()
    row = grade_end_to_end(_namespace(SOLUTION, "sample_prior = lc.sample_prior"))
    assert row.measured == "uses labcode's own code: sample_prior is labcode's labcode.likelihood.sample_prior"
    assert time.perf_counter() - start < 1


def test_a_missing_or_untouched_function_fails_the_row_at_once():
    fast = SOLUTION[: SOLUTION.index("def analyze_beta_vae")]
    start = time.perf_counter()
    row = grade_end_to_end(_namespace(fast))
    assert time.perf_counter() - start < 1
    assert not row.passed and row.measured == "needs all eleven: analyze_beta_vae is not defined"
    results = grade_namespace(_namespace(SOLUTION, TODO))
    assert results.end_to_end.measured == "needs all eleven: reconstruction_loss is not implemented"
    assert results.end_to_end.seconds < 1


def test_the_watch_sees_the_students_calls_not_labcodes():
    ns = _namespace(SOLUTION)
    calls: list[str] = []
    x = torch.zeros(4, 2)
    with watch_references(ns, calls):
        lc.evaluate_vae(lc.VAE(), x)                       # labcode calling its references: not the student's
        ns["kl_regularization"](torch.zeros(2, 2), torch.zeros(2, 2))
    assert calls == []
    exec("def kl_regularization(mu, logvar):\n    return lc.standard_normal_kl(mu, logvar)", ns)
    with watch_references(ns, calls):
        ns["kl_regularization"](torch.zeros(2, 2), torch.zeros(2, 2))
    assert calls == ["your kl_regularization calls labcode's labcode.kl.standard_normal_kl"]


# --------------------------------------------------------------------------- each stage can fail

def _broken(pipeline: dict, change) -> dict:
    copy_ = copy.deepcopy(pipeline)
    change(copy_)
    return copy_


def _set(key: str, value) -> object:
    return lambda p: p.__setitem__(key, value)


@pytest.mark.parametrize(("stage", "change"), [
    ("training", lambda p: p["state_dict"]["decoder.2.bias"].add_(3.0)),
    ("training", lambda p: p["state_dict"]["decoder_logvar"].fill_(float("nan"))),
    ("evaluation", lambda p: (p["elbo"].add_(0.5), p["elbo_again"].add_(0.5))),
    ("bound", lambda p: (p["elbo"].add_(0.5), p["elbo_again"].add_(0.5))),
    ("KL", lambda p: p.__setitem__("kl_mc", [v + 0.3 for v in p["kl_mc"]])),
    ("KL", lambda p: p["kl_closed"].mul_(0.5)),
    ("KL", lambda p: p["kl_standard"].add_(0.01)),
    ("likelihood", lambda p: p["likelihood"].log_()),
    ("marginal likelihood", lambda p: (p["marginal"].mul_(2), p["marginal_again"].mul_(2))),
    ("generation", lambda p: (p["prior"].add_(0.1), p["prior_again"].add_(0.1))),
    ("reproducibility", lambda p: p["prior_again"].neg_()),
    ("β sweep", lambda p: p["beta"][1.0].__setitem__("elbo", p["beta"][1.0]["elbo"] - 1.0)),
    ("β sweep", lambda p: p["beta"][0.0].__setitem__("kl_divergence", 0.0)),
    ("β sweep", _set("beta", "NoneType")),
    ("KL", _set("kl_standard", 3)),
])
def test_each_stage_fails_on_a_result_wrong_in_it(pipeline, stage, change):
    assert check_end_to_end(pipeline).passed
    row = check_end_to_end(_broken(pipeline, change))
    assert not row.passed
    stages = [part.split(":")[0] for part in row.measured.split("; ")]
    assert stage in stages, row


@pytest.mark.parametrize("forged", [3, {}, {"failed": "x"}, {"uses_reference": ["x"] * 10_000},
                                    {"state_dict": {"a": 1}}, {"failed": {"stage": None}}])
def test_a_forged_result_fails_without_raising(forged):
    row = check_end_to_end(forged)
    assert not row.passed and len(row.measured) < 2000


def test_the_readme_states_the_rows_plan_and_tolerances():
    text = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    t, points = TOLERANCES, -(-PLAN.n_train // PLAN.eval_stride)
    for phrase in (f"({PLAN.steps} steps, from `decoder_logvar = {PLAN.init_decoder_logvar:g}`)",
                   f"{PLAN.draws} draws of {points} points", f"within {t.train:g} of a model trained",
                   f"within {t.elbo:g} of `lc.evaluate_vae`'s", f"at most {t.bound:g} above the exact log p(x)",
                   f"rtol {t.closed_form_rtol:.0e}".replace("e-0", "e-"), f"Monte Carlo KL within {t.mc_kl:g}",
                   f"log p̂_K within {t.log_marginal:g}", f"covariance within {t.prior:g}",
                   f"within {t.beta:g} of `lc.analyze_beta_vae`'s", f"a {len(PLAN.betas)}-β sweep"):
        assert phrase in text, phrase


def test_the_pipeline_checks_its_arguments():
    with pytest.raises(TypeError, match="ns"):
        run_pipeline([])
    with pytest.raises(TypeError, match="plan"):
        run_pipeline({}, plan=3)
    assert PLAN.betas == (0.0, 1.0) and 1.0 in PLAN.betas       # the β sweep judges the ELBO at β = 1


# --------------------------------------------------------------------------- in the sandbox

@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four submissions graded in worker processes, two at a time."""
    folder = tmp_path_factory.mktemp("endtoend")
    sources = {"correct.py": SOLUTION, "uses_reference.py": SOLUTION + ELBO_WITH_REFERENCE,
               "bug_reparameterize.py": SOLUTION + PLANTED_BUGS["reparameterize"], "todo.py": SOLUTION + TODO}
    for name, source in sources.items():
        (folder / name).write_text(source)
    graded = grade_class(sorted(folder.iterdir()), jobs=2, timeout=120, memory_mb=1024)
    return {Path(g.path).name: g for g in graded}


def test_correct_solution_passes_the_row_in_the_sandbox(sandboxed):
    graded = sandboxed["correct.py"]
    assert graded.status == "graded" and graded.score == 11 and graded.complete, graded
    assert graded.end_to_end.passed and graded.end_to_end.seconds < 30


def test_calling_a_reference_in_the_sandbox_fails_the_row_not_the_status(sandboxed):
    graded = sandboxed["uses_reference.py"]
    assert graded.status == "graded" and graded.score == 11 and not graded.complete   # compute_elbo's row passes
    assert graded.end_to_end.measured == ("uses labcode's own code: your compute_elbo calls labcode's "
                                          "labcode.elbo.reparameterize")


def test_one_file_exits_0_only_with_the_end_to_end_row(tmp_path, capsys):
    path = tmp_path / "uses_reference.py"
    path.write_text(SOLUTION + ELBO_WITH_REFERENCE)
    assert main([str(path), "--timeout", "120"]) == 1                  # 11/11, but the end-to-end row fails
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "Score: 11/11" and lines[-2].startswith(f"{TITLE}: FAIL: uses labcode's own code")


def test_one_bug_in_the_sandbox_fails_its_row_and_the_end_to_end_row(sandboxed):
    graded = sandboxed["bug_reparameterize.py"]
    assert _failed(graded.results) == ["reparameterize"] and not graded.end_to_end.passed
    assert graded.end_to_end.measured.startswith("training: ")


def test_a_todo_in_the_sandbox_fails_the_row_at_once(sandboxed):
    graded = sandboxed["todo.py"]
    assert graded.end_to_end.measured == "needs all eleven: reconstruction_loss is not implemented"
    assert graded.end_to_end.seconds < 1 and _failed(graded.results) == ["reconstruction_loss"]
