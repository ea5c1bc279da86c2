"""The grader's end-to-end row: the student's eleven functions, trained and evaluated together (chapter "For students").

The eleven checks (:mod:`labcode.lab.checks`) grade each function **in isolation**, the other ten replaced by
``labcode``'s references, so that one bug fails one row. This row does the opposite: :func:`run_pipeline` calls
the student's functions *as they are*, so the student's ``compute_elbo`` calls the student's
``reparameterize``, ``reconstruction_loss`` and ``kl_regularization``, and the numbers it reports are the
student's own. With the seeds of a :class:`Plan` it

1. **trains** a small :class:`labcode.VAE` on the lab's spiral: full-batch Adam on
   :math:`-\\frac1N \\sum_i \\mathrm{ELBO}(x_i)`, the ELBO from the student's ``compute_elbo``, starting from
   ``decoder_logvar`` :math:`\\neq 0` so that ``compute_elbo`` (through ``reconstruction_loss``) must use it;
2. **evaluates** the trained model with the student's functions: the mean ELBO of a few points over many draws
   (``compute_elbo``), :math:`\\mathrm{KL}(q(z \\mid x) \\,\\|\\, p(z))` three ways (``monte_carlo_kl`` on
   samples of ``reparameterize`` with per-coordinate log-densities; ``standard_normal_kl`` and
   ``kl_regularization``; ``gaussian_kl_closed_form`` with the prior's parameters as Python numbers),
   :math:`p(x \\mid \\mu(x))` (``likelihood_given_z``), :math:`\\hat p_K(x)`
   (``approximate_marginal_likelihood``), prior samples (``sample_prior``) and a two-β sweep
   (``analyze_beta_vae``); the seeded computations run twice;
3. returns **plain values only**: the trained model's ``state_dict`` and what the functions returned.

:func:`check_end_to_end` runs in the trusted grader: it rebuilds the model from the ``state_dict``, computes
the same quantities with ``labcode`` (:func:`labcode.evaluate_vae`, the exact :math:`\\log p(x)` by quadrature,
the closed forms, a reference model trained by the same loop with the reference ``compute_elbo``) and checks,
stage by stage, with the tolerances of :class:`Tolerances`. A failure names the stage that disagreed and the
functions it involves.

A call from the student's code to any of the eleven references (or the ``labcode`` functions that are the same
implementation, :func:`~labcode.lab.checklist.reference_aliases`) while the pipeline runs fails the row ("uses labcode's ..."):
:func:`watch_references` sees it without changing anything (a profile hook), in the notebook and in the
grader's worker alike. Calls that ``labcode``'s own helpers make (``lc.train_vae`` calling the reference ELBO,
as the hints of ``analyze_beta_vae`` allow) are not the student's. Used by :mod:`labcode.lab.runner` (in
process) and :mod:`labcode.lab.sandbox` (in the worker).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Normal

from ..data import make_spiral
from ..elbo import kl_regularization
from ..exact import vae_log_evidence
from ..likelihood import likelihood_given_z, log_marginal_likelihood_mc
from ..vae import VAE, VAEConfig, analyze_beta_vae, evaluate_vae
from .checklist import BY_NAME, CHECKLIST, reference_aliases
from .checks import elbo_is_unweighted
from .runner import Result

#: the row's name, as a :class:`~labcode.lab.runner.Result` and a CSV column
END_TO_END = "end_to_end"
#: how reports introduce the row
TITLE = "End to end (your eleven functions together)"
#: the row's expected column
EXPECTED = "labcode's values on your trained model, within stated tolerances"
#: draws per point of labcode's ELBO that the student's is compared with
REFERENCE_DRAWS = 4096
#: the checklist's names, in order
NAMES = tuple(item.name for item in CHECKLIST)
#: code of wrappers that a call passes through without being their call (the grader worker's tripwires)
_PASS_THROUGH: set[types.CodeType] = set()


@dataclass(frozen=True)
class Plan:
    """The pipeline's sizes and seeds (one plan for every submission, so the reference is computed once).

    Measured on a 2-core CPU: training takes about 0.3 s, the β sweep about 0.4 s, the rest about 0.2 s.
    """

    n_train: int = 256             #: spiral points (noise 0.1) to train on
    data_seed: int = 20
    init_seed: int = 21            #: the model's initialisation
    init_decoder_logvar: float = -1.0   #: log σ_x² at the start; not 0, so ignoring it shows
    steps: int = 300               #: Adam steps
    lr: float = 3e-2
    noise_seed: int = 22           #: the training's reparameterisation noise
    eval_stride: int = 16          #: evaluate at x[::eval_stride] (16 points)
    draws: int = 256               #: ELBO draws per evaluation point
    eval_seed: int = 23
    kl_stride: int = 64            #: the KL at x[::kl_stride] (4 points)
    kl_samples: int = 20_000       #: Monte Carlo samples of q(z | x) per point
    kl_seed: int = 24
    marginal_samples: int = 100_000   #: K prior samples for p̂_K(x)
    marginal_seed: int = 25
    prior_samples: int = 20_000
    prior_seed: int = 26
    betas: tuple[float, ...] = (0.0, 1.0)
    beta_steps: int = 200
    beta_seed: int = 27
    beta_lr: float = 3e-2


@dataclass(frozen=True)
class Tolerances:
    """How far the student's numbers may be from ``labcode``'s on the same trained model.

    Measured with the reference functions on :data:`PLAN`: training with 10 other noise seeds ends between
    0.003 below and 0.12 above the reference model's ELBO (labcode's evaluation on the training data); the
    evaluation's mean over 16 × 256 draws is within 0.04 of labcode's over 30 seeds (standard deviation
    0.017); the Monte Carlo KL of 2e4 draws within 0.023 of the closed form (30 seeds, 4 points); log p̂_K
    with K = 1e5 within 0.076 of the exact log p(x) (30 seeds, 16 points); the β = 1 ELBO of a plain Adam loop
    (the hints' alternative to ``lc.train_vae``) within 0.053 of ``lc.analyze_beta_vae``'s (4 seeds). A bug
    misses by far more: 0.4 (``decoder_logvar`` ignored) to 3.6 (the variance in ``reparameterize``) in the
    training's ELBO, a factor of 2 in the KL (``.mean()`` over coordinates).
    """

    train: float = 0.15            #: the student-trained model's ELBO ≥ the reference-trained one's − this
    elbo: float = 0.1              #: the largest ``|mean ELBO − labcode's|`` over the evaluation points
    bound: float = 0.1             #: mean ELBO ≤ mean exact log p(x) + this
    closed_form_rtol: float = 1e-4  #: closed forms (KLs, p(x | z)), relative, with atol 1e-5 (1e-12 for p)
    mc_kl: float = 0.1             #: the largest ``|Monte Carlo KL − closed form|`` per point
    log_marginal: float = 0.2      #: the largest ``|log p̂_K(x) − exact log p(x)|`` per point
    prior: float = 0.05            #: the largest ``|mean|`` and ``|cov − I|`` of the prior samples
    beta: float = 0.15             #: the β = 1 ELBO of the sweep ≥ labcode's − this


PLAN = Plan()
TOLERANCES = Tolerances()

#: each stage: the functions it runs, and what its disagreement means (the row's hint)
STAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "training": (("compute_elbo", "reparameterize", "reconstruction_loss", "kl_regularization"),
                 "training on −mean ELBO with your compute_elbo ends worse than with labcode's"),
    "evaluation": (("compute_elbo", "reparameterize", "reconstruction_loss", "kl_regularization"),
                   "your compute_elbo on the trained model disagrees with labcode's ELBO"),
    "bound": (("compute_elbo", "reparameterize", "reconstruction_loss", "kl_regularization"),
              "your ELBO is above log p(x), which a lower bound cannot be"),
    "KL": (("monte_carlo_kl", "reparameterize", "standard_normal_kl", "kl_regularization", "gaussian_kl_closed_form"),
           "a KL(q(z|x) ‖ p(z)) of the trained encoder disagrees with the closed form"),
    "likelihood": (("likelihood_given_z",), "p(x | z) of the trained decoder disagrees with labcode's"),
    "marginal likelihood": (("approximate_marginal_likelihood", "sample_prior"),
                            "p̂_K(x) of the trained decoder is far from the exact p(x)"),
    "generation": (("sample_prior",), "the prior samples are not N(0, I)"),
    "reproducibility": (("reparameterize", "sample_prior", "approximate_marginal_likelihood", "compute_elbo"),
                        "the same seed gave different numbers: every random draw must use the generator passed in"),
    "β sweep": (("analyze_beta_vae",), "your β sweep on the training data disagrees with labcode's"),
}


# --------------------------------------------------------------------------- the references and the watch

def pass_through(wrapper: Callable) -> Callable:
    """Register ``wrapper`` (a function that only forwards its call) so that :func:`watch_references` looks past
    it for the caller; returns it."""
    _PASS_THROUGH.add(wrapper.__code__)
    return wrapper


def _label(f: Callable) -> str:
    return f"{f.__module__}.{f.__qualname__}"


def _reference_codes() -> dict[types.CodeType, tuple[str, str]]:
    """{code object: (checklist name, ``module.name``)} of the references, unwrapped from any tripwire."""
    codes = {}
    for name, f in reference_aliases():
        f = inspect.unwrap(f)
        codes[f.__code__] = (name, _label(f))
    return codes


def _code_of(f: object) -> types.CodeType | None:
    """The code object that calling ``f`` runs first: through ``functools.wraps`` wrappers, partials and methods."""
    for _ in range(10):
        if isinstance(f, functools.partial):
            f = f.func
        elif isinstance(f, types.MethodType):
            f = f.__func__
        else:
            break
    f = inspect.unwrap(f) if callable(f) else f
    return getattr(f, "__code__", None)


def bound_references(ns: Mapping[str, Any]) -> list[str]:
    """The checklist names of ``ns`` bound to a reference or one of its aliases, each as a sentence."""
    codes = _reference_codes()
    found = []
    for name in NAMES:
        code = _code_of(ns.get(name))
        if code in codes:
            found.append(f"{name} is labcode's {codes[code][1]}")
    return found


@contextlib.contextmanager
def watch_references(ns: Mapping[str, Any], calls: list[str]) -> Iterator[None]:
    """While the block runs (in this thread), add to ``calls`` each call of a reference that the student's code
    makes: the caller (past the worker's tripwire wrappers) is a function of ``ns``, this module (a name of
    ``ns`` bound to a reference) or any module outside ``labcode``. A profile hook: nothing is patched."""
    codes = _reference_codes()
    this = __name__

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        if event != "call" or frame.f_code not in codes:
            return
        caller = frame.f_back
        while caller is not None and caller.f_code in _PASS_THROUGH:
            caller = caller.f_back
        module = "" if caller is None else str(caller.f_globals.get("__name__", ""))
        name, label = codes[frame.f_code]
        if caller is not None and caller.f_globals is ns:
            text = f"your {caller.f_code.co_name} calls labcode's {label}"
        elif module == this:
            text = f"{name} is labcode's {label}"
        elif module == "labcode" or module.startswith("labcode."):
            return                                    # labcode's own helpers (lc.train_vae) calling a reference
        else:
            text = f"{caller.f_code.co_name if caller else 'code'} in {module or 'a cell'} calls labcode's {label}"
        if text not in calls:
            calls.append(text)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(previous)


# --------------------------------------------------------------------------- the pipeline (the student's side)

def training_data(plan: Plan = PLAN) -> Tensor:
    """The spiral the pipeline trains on: (n_train, 2)."""
    return make_spiral(plan.n_train, 0.1, generator=torch.Generator().manual_seed(plan.data_seed))


def initial_model(plan: Plan = PLAN) -> VAE:
    """The VAE every run starts from: seeded, with ``decoder_logvar = plan.init_decoder_logvar``."""
    model = VAE(generator=torch.Generator().manual_seed(plan.init_seed))
    with torch.no_grad():
        model.decoder_logvar.fill_(plan.init_decoder_logvar)
    return model


def train(model: VAE, data: Tensor, compute_elbo: Callable, plan: Plan = PLAN) -> None:
    """Full-batch Adam on ``-compute_elbo(model, data)["elbo"].mean()``, ``plan.steps`` steps, in place."""
    optimiser = torch.optim.Adam(model.parameters(), lr=plan.lr)
    generator = torch.Generator().manual_seed(plan.noise_seed)
    for _ in range(plan.steps):
        loss = -compute_elbo(model, data, generator=generator)["elbo"].mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


class _Stage:
    """``with stage("training"):`` names the stage that runs, so that an exception is recorded with it."""

    def __init__(self) -> None:
        self.name = "start"

    def __call__(self, name: str) -> _Stage:
        self.name = name
        return self

    def __enter__(self) -> _Stage:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False


def _plain(value: Any) -> Any:
    """A tensor as a detached CPU copy; anything else as it is (the worker's protocol sends plain types only)."""
    return value.detach().to("cpu", copy=True) if isinstance(value, Tensor) else value


def _student_function(err: BaseException, ns: Mapping[str, Any]) -> str:
    """The innermost function of ``ns`` in the traceback of ``err`` (``""`` if none)."""
    name, tb = "", err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals is ns:
            name = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return name if name not in ("", "<module>") else ""


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


def run_pipeline(ns: Mapping[str, Any], plan: Plan = PLAN) -> dict[str, Any]:
    """Train and evaluate with the student's functions ``ns[name]`` as they are (see the module's description).

    Returns a dict of plain values: ``uses_reference`` (sentences, empty when the student's code called no
    reference), ``failed`` (``None``, or the ``stage``, ``function``, ``error`` and ``not_implemented`` of the
    exception that stopped it), and what the stages produced: ``state_dict``, ``elbo`` and
    ``elbo_again`` (compute_elbo's ``"elbo"`` for ``draws`` copies of the evaluation points), ``kl_mc`` (one
    value per KL point), ``kl_standard``, ``kl_regularization``, ``kl_closed`` (per coordinate), ``likelihood``,
    ``marginal`` and ``marginal_again``, ``prior`` and ``prior_again``, ``beta`` (``{β: {reconstruction,
    kl_divergence, elbo}}``). Out-of-memory errors, ``SystemExit`` and ``KeyboardInterrupt`` propagate.
    """
    if not isinstance(ns, Mapping):
        raise TypeError(f"ns must be a mapping (a namespace such as globals()), got {type(ns).__name__}")
    if not isinstance(plan, Plan):
        raise TypeError(f"plan must be a Plan, got {type(plan).__name__}")
    out: dict[str, Any] = {"uses_reference": [], "failed": None}
    missing = [name for name in NAMES if not callable(ns.get(name))]
    if missing:
        out["failed"] = {"stage": "start", "function": missing[0], "error": "not defined", "not_implemented": True}
        return out
    out["uses_reference"] = bound_references(ns)
    if out["uses_reference"]:
        return out
    stage = _Stage()
    try:
        with watch_references(ns, out["uses_reference"]):
            _stages(ns, plan, out, stage)
    except Exception as err:
        if _is_out_of_memory(err):
            raise
        function = _student_function(err, ns)
        # a TODO body still in place, not any NotImplementedError (nn.Module's own, for a module without forward,
        # is a bug in how the student calls it)
        out["failed"] = {"stage": stage.name, "function": function,
                         "error": f"{type(err).__name__}: {str(err)[:300]}",
                         "not_implemented": isinstance(err, NotImplementedError)
                         and str(err) == f"TODO: implement {function}"}
    return out


def _stages(ns: Mapping[str, Any], plan: Plan, out: dict[str, Any], stage: _Stage) -> None:
    f = {name: ns[name] for name in NAMES}
    x = training_data(plan)
    with stage("training"):
        model = initial_model(plan)
        train(model, x, f["compute_elbo"], plan)
        out["state_dict"] = {k: _plain(v) for k, v in model.state_dict().items()}

    points = x[::plan.eval_stride]
    with torch.no_grad():
        for key in ("elbo", "elbo_again"):
            with stage("evaluation"):
                result = f["compute_elbo"](model, points.repeat(plan.draws, 1),
                                           generator=torch.Generator().manual_seed(plan.eval_seed))
                out[key] = _plain(result["elbo"])

        with stage("KL"):
            mu, logvar = model.encode(x[::plan.kl_stride])
            std = torch.exp(0.5 * logvar)
            generator = torch.Generator().manual_seed(plan.kl_seed)
            out["kl_mc"] = []
            for m, lv, s in zip(mu, logvar, std, strict=True):
                size = (plan.kl_samples, m.shape[0])
                z = f["reparameterize"](m.expand(size), lv.expand(size), generator=generator)
                # per-coordinate log-densities, (N, d): the KL of the joint sums over coordinates
                out["kl_mc"].append(_plain(f["monte_carlo_kl"](z, Normal(m, s).log_prob, Normal(0.0, 1.0).log_prob)))
            out["kl_standard"] = _plain(f["standard_normal_kl"](mu, logvar))
            out["kl_regularization"] = _plain(f["kl_regularization"](mu, logvar))
            out["kl_closed"] = _plain(f["gaussian_kl_closed_form"](mu, std, 0.0, 1.0))

        sigma = model.noise_std.item()
        with stage("likelihood"):
            mu_points, _ = model.encode(points)
            out["likelihood"] = _plain(f["likelihood_given_z"](model.decoder, points, mu_points, sigma))
        for key in ("marginal", "marginal_again"):
            with stage("marginal likelihood"):
                out[key] = _plain(f["approximate_marginal_likelihood"](     # the whole VAE, as the book passes it
                    model, points, plan.marginal_samples, sigma,
                    generator=torch.Generator().manual_seed(plan.marginal_seed)))
        for key in ("prior", "prior_again"):
            with stage("generation"):
                out[key] = _plain(f["sample_prior"](plan.prior_samples, model.latent_dim,
                                                    generator=torch.Generator().manual_seed(plan.prior_seed)))

    with stage("β sweep"):
        results = f["analyze_beta_vae"](x, plan.betas, steps=plan.beta_steps, seed=plan.beta_seed,
                                        config=VAEConfig(lr=plan.beta_lr))
        out["beta"] = _beta_summary(results, plan.betas)


def _beta_summary(results: Any, betas: tuple[float, ...]) -> Any:
    """The three numbers per β of a β sweep's result; the type's name where the result is not a dict of dicts."""
    if not isinstance(results, Mapping):
        return type(results).__name__
    keys = ("reconstruction", "kl_divergence", "elbo")
    summary = {}
    for beta in betas:
        res = results.get(beta)
        summary[float(beta)] = ({k: _plain(res.get(k)) for k in keys} if isinstance(res, Mapping)
                                else type(res).__name__)
    return summary


# --------------------------------------------------------------------------- the check (the grader's side)

class _Unusable(Exception):
    """A value of the pipeline's result that cannot be compared (missing, wrong type or shape, not finite)."""

    def __init__(self, measured: str, expected: str) -> None:
        super().__init__(measured)
        self.measured, self.expected = measured, expected


def _tensor(value: Any, shape: tuple[int, ...], what: str) -> Tensor:
    """``value`` as a float64 tensor of ``shape``, or :class:`_Unusable`."""
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise _Unusable(f"{what}: {type(value).__name__}", f"a float tensor of shape {shape}")
    if tuple(value.shape) != shape:
        raise _Unusable(f"{what}: shape {tuple(value.shape)}", f"shape {shape}")
    return value.detach().double()


def _number(value: Any, what: str) -> float:
    """A Python number or a one-element float tensor as a float, or :class:`_Unusable`."""
    if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
        return float(value.detach().reshape(()).item())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    shape = f" of shape {tuple(value.shape)}" if isinstance(value, Tensor) else ""
    raise _Unusable(f"{what}: {type(value).__name__}{shape}", "a number (a 0-dim tensor or a float)")


def _fmt(t: Tensor) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in t.flatten()[:4].tolist()) + (", …]" if t.numel() > 4 else "]")


def _num(value: float) -> str:
    """Three decimals, or three significant digits for a value as large as a diverged training gives."""
    return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"


def _rebuild(state_dict: Any) -> VAE:
    """The trained model from its ``state_dict``: the lab's VAE's keys and shapes, float32 and finite."""
    model = initial_model()
    expected = model.state_dict()
    if not isinstance(state_dict, Mapping) or set(state_dict) != set(expected):
        raise _Unusable("the trained model's parameters are not the lab's VAE's", "the VAE's state_dict")
    for key, value in expected.items():
        got = state_dict[key]
        if not (isinstance(got, Tensor) and got.shape == value.shape and got.dtype == value.dtype):
            raise _Unusable(f"parameter {key}: not a {value.dtype} tensor of shape {tuple(value.shape)}",
                            "the VAE's state_dict")
        if not torch.isfinite(got).all():
            raise _Unusable(f"parameter {key} is NaN or infinite after training", "finite parameters")
    model.load_state_dict(state_dict)
    return model.eval()


def _model_elbo(model: VAE, data: Tensor, plan: Plan) -> float:
    """labcode's mean ELBO of ``model`` on ``data`` (64 draws per point, a fixed seed): how well it trained."""
    ev = evaluate_vae(model, data, generator=torch.Generator().manual_seed(plan.eval_seed))
    return ev["elbo"].mean().item()


_REFERENCE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _reference_run(plan: Plan) -> dict[str, Any]:
    """What ``labcode``'s own functions make of ``plan``: the ELBO of the model trained by :func:`train` with the
    reference ``compute_elbo``, and the β sweep of :func:`labcode.analyze_beta_vae` (computed once per plan)."""
    data = training_data(plan)
    model = initial_model(plan)
    train(model, data, BY_NAME["compute_elbo"].reference, plan)
    sweep = analyze_beta_vae(data, plan.betas, steps=plan.beta_steps, seed=plan.beta_seed,
                             config=VAEConfig(lr=plan.beta_lr))
    return {"train_elbo": _model_elbo(model, data, plan), "beta_elbo": {b: sweep[b]["elbo"] for b in plan.betas}}


def reference_run(plan: Plan = PLAN) -> dict[str, Any]:
    """:func:`_reference_run`, computed by one thread while the others wait (a batch grades from threads)."""
    with _REFERENCE_LOCK, torch.enable_grad():
        return _reference_run(plan)


class _Judge:
    """The stages' comparisons: each failed one is kept as ``(stage, measured, expected)``."""

    def __init__(self, pipeline: Mapping[str, Any], plan: Plan, tol: Tolerances) -> None:
        self.pipeline, self.plan, self.tol = pipeline, plan, tol
        self.failures: list[tuple[str, str, str]] = []
        self.notes: list[str] = []

    def require(self, ok: bool, stage: str, measured: str, expected: str) -> None:
        if not ok:
            self.failures.append((stage, measured, expected))

    def stage(self, name: str, judge: Callable[[], None]) -> None:
        try:
            judge()
        except _Unusable as err:
            self.failures.append((name, err.measured, err.expected))

    def get(self, key: str) -> Any:
        if key not in self.pipeline:
            raise _Unusable(f"no {key} in the pipeline's result", key)
        return self.pipeline[key]

    def run(self) -> None:
        plan = self.plan
        try:
            self.model = _rebuild(self.get("state_dict"))
        except _Unusable as err:
            self.failures.append(("training", err.measured, err.expected))
            return
        self.data = training_data(plan)
        self.points = self.data[::plan.eval_stride]
        self.log_p = vae_log_evidence(self.model, self.points).log_evidence.double()   # exact, by quadrature
        with torch.no_grad():
            for name, judge in (("training", self.training), ("evaluation", self.evaluation), ("KL", self.kl),
                                ("likelihood", self.likelihood), ("marginal likelihood", self.marginal),
                                ("generation", self.generation), ("reproducibility", self.reproducibility)):
                self.stage(name, judge)
        self.stage("β sweep", self.beta)

    def training(self) -> None:
        got, ref = _model_elbo(self.model, self.data, self.plan), reference_run(self.plan)["train_elbo"]
        self.require(got >= ref - self.tol.train, "training", f"labcode's ELBO of your trained model {_num(got)}",
                     f"≥ {_num(ref)} − {self.tol.train:g} (the same loop with labcode's compute_elbo)")
        self.notes.append(f"trained ELBO {got:.2f}, labcode's loop {ref:.2f}")

    def evaluation(self) -> None:
        n = self.points.shape[0]
        got = _tensor(self.get("elbo"), (n * self.plan.draws,), "compute_elbo(...)['elbo']").mean().item()
        ref = evaluate_vae(self.model, self.points, n_samples=REFERENCE_DRAWS,
                           generator=torch.Generator().manual_seed(self.plan.eval_seed))["elbo"].mean().item()
        self.require(abs(got - ref) <= self.tol.elbo, "evaluation", f"mean ELBO {_num(got)}",
                     f"{_num(ref)} ± {self.tol.elbo:g} (labcode's, {REFERENCE_DRAWS} draws per point)")
        log_p = self.log_p.mean().item()
        self.require(got <= log_p + self.tol.bound, "bound", f"mean ELBO {_num(got)}",
                     f"≤ mean log p(x) = {_num(log_p)} (exact, by quadrature) + {self.tol.bound:g}")

    def kl(self) -> None:
        points = self.data[::self.plan.kl_stride]
        mu, logvar = self.model.encode(points)
        ref = kl_regularization(mu, logvar).double()
        b, d = mu.shape
        tol = self.tol
        for key, what in (("kl_standard", "standard_normal_kl"), ("kl_regularization", "kl_regularization")):
            got = _tensor(self.get(key), (b,), what)
            self.require(torch.allclose(got, ref, rtol=tol.closed_form_rtol, atol=1e-5), "KL",
                         f"{what} {_fmt(got)}", f"{_fmt(ref)} (rtol {tol.closed_form_rtol:g})")
        closed = _tensor(self.get("kl_closed"), (b, d), "gaussian_kl_closed_form per coordinate").sum(-1)
        self.require(torch.allclose(closed, ref, rtol=tol.closed_form_rtol, atol=1e-5), "KL",
                     f"gaussian_kl_closed_form summed {_fmt(closed)}", f"{_fmt(ref)} (rtol {tol.closed_form_rtol:g})")
        values = self.get("kl_mc")
        if not (isinstance(values, list) and len(values) == b):
            raise _Unusable("monte_carlo_kl: not one value per point", f"{b} numbers")
        got = torch.tensor([_number(v, "monte_carlo_kl") for v in values], dtype=torch.float64)
        self.require(bool(((got - ref).abs() <= tol.mc_kl).all()), "KL", f"monte_carlo_kl {_fmt(got)}",
                     f"{_fmt(ref)} ± {tol.mc_kl:g} (closed form; {self.plan.kl_samples:,} draws of your reparameterize)")

    def likelihood(self) -> None:
        mu, _ = self.model.encode(self.points)
        ref = likelihood_given_z(self.model.decoder, self.points, mu, self.model.noise_std.item()).double()
        got = _tensor(self.get("likelihood"), ref.shape, "likelihood_given_z")
        self.require(torch.allclose(got, ref, rtol=self.tol.closed_form_rtol, atol=1e-12), "likelihood",
                     f"p(x | μ(x)) {_fmt(got)}", f"{_fmt(ref)} (rtol {self.tol.closed_form_rtol:g})")

    def marginal(self) -> None:
        got = _tensor(self.get("marginal"), self.log_p.shape, "approximate_marginal_likelihood").log()
        # judged only where labcode's estimator with the same K is itself within half the tolerance (on a badly
        # trained model, prior sampling misses the posterior and no K = 1e5 estimate is accurate)
        ref = log_marginal_likelihood_mc(self.model.decoder, self.points, self.plan.marginal_samples,
                                         self.model.noise_std.item(),
                                         generator=torch.Generator().manual_seed(self.plan.marginal_seed + 1))
        fair = (ref.double() - self.log_p).abs() <= self.tol.log_marginal / 2
        err = (got - self.log_p).abs()[fair]
        if err.numel() == 0:
            self.notes.append("marginal likelihood not judged: labcode's own estimate is off at every point")
            return
        self.require(bool((err <= self.tol.log_marginal).all()), "marginal likelihood",
                     f"log p̂ off by up to {err.max().item():.3g}",
                     f"exact log p(x) ± {self.tol.log_marginal:g} (K = {self.plan.marginal_samples:,})")

    def generation(self) -> None:
        z = _tensor(self.get("prior"), (self.plan.prior_samples, self.model.latent_dim), "sample_prior")
        mean_err = z.mean(0).abs().max().item()
        cov_err = (torch.cov(z.T) - torch.eye(z.shape[1], dtype=z.dtype)).abs().max().item()
        self.require(mean_err <= self.tol.prior and cov_err <= self.tol.prior, "generation",
                     f"|mean| {mean_err:.3f}, |cov − I| {cov_err:.3f}", f"≤ {self.tol.prior:g} each (N(0, I))")

    def reproducibility(self) -> None:
        changed = [what for key, what in (("elbo", "compute_elbo"), ("marginal", "approximate_marginal_likelihood"),
                                          ("prior", "sample_prior"))
                   if not (isinstance(self.pipeline.get(key), Tensor) and isinstance(self.pipeline.get(key + "_again"), Tensor)
                           and torch.equal(self.pipeline[key], self.pipeline[key + "_again"]))]
        self.require(not changed, "reproducibility", "same seed, different numbers: " + ", ".join(changed),
                     "identical numbers from the same seed")

    def beta(self) -> None:
        summary = self.get("beta")
        if not isinstance(summary, Mapping):
            raise _Unusable(f"analyze_beta_vae returned a {summary}", "a dict {beta: result}")
        numbers = {}
        for b in self.plan.betas:
            res = summary.get(float(b))
            if not isinstance(res, Mapping):
                raise _Unusable(f"β = {b}: {res}", "a dict with reconstruction, kl_divergence, elbo")
            numbers[b] = {k: _number(res.get(k), f"β = {b}: {k}") for k in ("reconstruction", "kl_divergence", "elbo")}
        for b, n in numbers.items():
            self.require(elbo_is_unweighted(n["elbo"], n["reconstruction"], n["kl_divergence"]),
                         "β sweep", f"β = {b}: elbo {_num(n['elbo'])}, reconstruction − KL "
                         f"{_num(n['reconstruction'] - n['kl_divergence'])}", "elbo = reconstruction − kl_divergence")
        low, high = min(self.plan.betas), max(self.plan.betas)
        self.require(numbers[high]["kl_divergence"] < numbers[low]["kl_divergence"], "β sweep",
                     f"KL {numbers[low]['kl_divergence']:.2f} at β = {low:g}, {numbers[high]['kl_divergence']:.2f} "
                     f"at β = {high:g}", "the KL falls as β grows")
        got, ref = numbers[1.0]["elbo"], reference_run(self.plan)["beta_elbo"][1.0]
        self.require(got >= ref - self.tol.beta, "β sweep", f"ELBO at β = 1: {_num(got)}",
                     f"≥ {_num(ref)} − {self.tol.beta:g} (labcode's analyze_beta_vae)")


def check_end_to_end(pipeline: Any, plan: Plan = PLAN, tol: Tolerances = TOLERANCES) -> Result:
    """Judge what :func:`run_pipeline` returned (in the grader: nothing in it is trusted); the end-to-end row.

    It fails, in this order of precedence, when the pipeline called a reference, when a function raised (the
    stage and the function named), or when any stage disagrees with ``labcode`` beyond ``tol``: then the
    measured column lists each stage that disagreed and the hint names the first one's functions.
    """
    if not isinstance(pipeline, Mapping):
        return Result(END_TO_END, False, f"no result: {type(pipeline).__name__}", EXPECTED,
                      "the pipeline must return its dict")
    uses = pipeline.get("uses_reference")
    if isinstance(uses, list) and uses:
        text = "; ".join(str(u) for u in uses[:5])
        return Result(END_TO_END, False, f"uses labcode's own code: {text}", EXPECTED,
                      "this row runs your eleven functions together: call your own, not labcode's")
    failed = pipeline.get("failed")
    if failed is not None:
        return _raised(failed)
    judge = _Judge(pipeline, plan, tol)
    judge.run()
    if not judge.failures:
        skipped = any("not judged" in note for note in judge.notes)
        return Result(END_TO_END, True, "; ".join(judge.notes) + ("; every other stage agrees" if skipped
                                                                  else "; every stage agrees"), EXPECTED)
    stages = list(dict.fromkeys(stage for stage, _, _ in judge.failures))
    first = {stage: (measured, expected) for stage, measured, expected in reversed(judge.failures)}
    measured = "; ".join(f"{stage}: {first[stage][0]}" for stage in stages)
    functions, what = STAGES[stages[0]]
    hint = f"{what}: look at {', '.join(functions)}"
    if len(stages) > 1:
        hint += f" (then: {', '.join(stages[1:])})"
    return Result(END_TO_END, False, measured, first[stages[0]][1], hint)


def _raised(failed: Any) -> Result:
    """The row of a pipeline stopped by an exception (``failed`` from :func:`run_pipeline`, checked here)."""
    if not isinstance(failed, Mapping):
        return Result(END_TO_END, False, "a malformed result", EXPECTED, "the pipeline must return its dict")
    stage, function = str(failed.get("stage", "?"))[:40], str(failed.get("function", ""))[:60]
    error = str(failed.get("error", ""))[:300]
    if failed.get("not_implemented") is True and function:
        return needs_all(function, "is not defined" if error == "not defined" else "is not implemented")
    who = f"your {function}" if function else "the pipeline"
    functions = STAGES.get(stage, ((function,), ""))[0]
    hint = f"your functions raise when they call each other: look at {', '.join(functions)}"
    if stage == "marginal likelihood":
        hint += " (this stage passes the whole lc.VAE as the decoder, as the book does: see the function's steps)"
    return Result(END_TO_END, False, f"{stage}: {who} raised {error}", EXPECTED, hint)


def needs_all(name: str, why: str) -> Result:
    """The row when a checklist function is missing or still a TODO: the pipeline needs all eleven."""
    return Result(END_TO_END, False, f"needs all eleven: {name} {why}", EXPECTED,
                  "define and implement all eleven functions; then this row trains and evaluates with them")
