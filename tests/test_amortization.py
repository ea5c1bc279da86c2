"""Tests for labcode.amortization: the best Gaussian per point against closed forms, autograd and a second rule."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import labcode as lc
from helpers import Linear
from labcode.amortization import (
    STARTS,
    best_gaussian,
    elbo_newton_terms,
    gauss_hermite_elbo,
    retrain_encoder,
    vae_gap_split,
    vae_gaussian_terms,
)
from labcode.exact import exact_terms, vae_quadrature
from labcode.gaussian import LinearGaussianModel, diagonal_gaussian_log_density
from labcode.kl import standard_normal_kl
from labcode.quadrature import latent_quadrature

F64 = torch.float64
SIGMA = 0.3


def linear_gaussian(weight: list[list[float]], n: int = 5, seed: int = 0) -> tuple[Linear, LinearGaussianModel, torch.Tensor]:
    """A 2-D linear decoder with the given W, and n points drawn from its model."""
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor(weight, dtype=F64)
    b = torch.tensor([0.3, -0.2], dtype=F64)
    z = torch.randn(n, 2, generator=g, dtype=F64)
    x = z @ w.T + b + SIGMA * torch.randn(n, 2, generator=g, dtype=F64)
    return Linear(w, b), LinearGaussianModel(w, b, SIGMA), x


#: orthogonal columns: W^T W is diagonal, so is the posterior covariance (the encoder's family is exact)
ORTHOGONAL = [[1.2, -0.4], [0.6, 0.8]]
#: W^T W with a large off-diagonal entry: the posterior is correlated, the diagonal family is not exact
CORRELATED = [[1.0, 0.9], [0.5, 0.6]]


def perturbed(mean: torch.Tensor, logvar: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (mean + 0.3 * torch.randn(mean.shape, generator=g, dtype=F64),
            logvar + 0.5 * torch.randn(logvar.shape, generator=g, dtype=F64))


def test_newton_terms_match_exact_terms_and_autograd() -> None:
    """The value is exact_terms' ELBO; gradient and Hessian agree with autograd of the same rule."""
    decoder, _, x = linear_gaussian(CORRELATED, n=3)
    mean, logvar = perturbed(torch.zeros(3, 2, dtype=F64), torch.full((3, 2), -2.0, dtype=F64))
    quad = latent_quadrature(decoder, x, SIGMA, q_mean=mean, q_logvar=logvar, tol=1e-2, points_per_axis=30)
    terms = elbo_newton_terms(quad, mean, logvar)
    torch.testing.assert_close(terms.value, exact_terms(quad, mean, logvar).elbo, rtol=0, atol=1e-12)
    torch.testing.assert_close(terms.q_mass, torch.ones(3, dtype=F64), rtol=0, atol=1e-6)
    log_lik = quad.log_joint + 0.5 * (quad.nodes**2).sum(1) + math.log(2 * math.pi)

    def elbo_sum(theta: torch.Tensor) -> torch.Tensor:
        m, v = theta[:, :2], theta[:, 2:]
        log_q = diagonal_gaussian_log_density(quad.nodes, m[quad.point], v[quad.point])
        return (quad.integrate(log_q, log_lik) - standard_normal_kl(m, v)).sum()

    theta = torch.cat([mean, logvar], 1)
    gradient = torch.func.grad(elbo_sum)(theta)
    hessian = torch.func.hessian(elbo_sum)(theta)          # (3, 4, 3, 4), block diagonal across points
    blocks = torch.stack([hessian[i, :, i, :] for i in range(3)])
    torch.testing.assert_close(terms.gradient, gradient, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(terms.hessian, blocks, rtol=1e-9, atol=1e-9)


def test_best_gaussian_is_the_posterior_when_the_posterior_is_diagonal() -> None:
    """Orthogonal columns of W: q* is the exact posterior and ELBO(q*) = log p(x), the approximation gap is zero."""
    decoder, model, x = linear_gaussian(ORTHOGONAL)
    post_mean, post_logvar = model.diagonal_posterior(x)
    start = perturbed(post_mean, post_logvar)
    quad = latent_quadrature(decoder, x, SIGMA, q_mean=start[0], q_logvar=start[1], tol=1e-7)
    best = best_gaussian(quad, *start)
    torch.testing.assert_close(best.mean, post_mean, rtol=0, atol=1e-6)
    # Newton stops at a predicted gain below 1e-10 nats; along v (curvature about 1/2) that leaves about 1e-5
    torch.testing.assert_close(best.logvar, post_logvar, rtol=0, atol=1e-5)
    torch.testing.assert_close(best.elbo, model.log_evidence(x), rtol=0, atol=1e-7)
    assert (best.elbo > best.start_elbo).all()
    assert (best.decrement < 1e-10).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_best_gaussian_matches_the_closed_form_for_a_correlated_posterior(seed: int) -> None:
    """Posterior N(m, S), precision L = S^-1: the best diagonal Gaussian is N(m, diag(1/L_jj)), and
    log p(x) - ELBO(q*) = KL(q* || posterior) = (sum_j log L_jj + log det S) / 2 > 0."""
    decoder, model, x = linear_gaussian(CORRELATED, seed=seed)
    post_mean, post_cov = model.posterior(x)
    precision = torch.linalg.inv(post_cov)
    quad = latent_quadrature(decoder, x, SIGMA, q_mean=post_mean, q_logvar=torch.log(post_cov.diagonal()).expand_as(post_mean),
                             tol=1e-7)
    best = best_gaussian(quad, post_mean, torch.log(post_cov.diagonal()).expand_as(post_mean))
    torch.testing.assert_close(best.mean, post_mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(best.logvar, -torch.log(precision.diagonal()).expand_as(post_mean), rtol=0, atol=1e-5)
    gap = 0.5 * (torch.log(precision.diagonal()).sum() + torch.logdet(post_cov))
    assert gap > 0.1
    torch.testing.assert_close(model.log_evidence(x) - best.elbo, gap.expand(len(x)), rtol=0, atol=1e-6)
    q = torch.distributions.MultivariateNormal(best.mean, torch.diag_embed(torch.exp(best.logvar)))
    posterior = torch.distributions.MultivariateNormal(post_mean, post_cov.expand(len(x), 2, 2))
    torch.testing.assert_close(torch.distributions.kl_divergence(q, posterior), gap.expand(len(x)), rtol=0, atol=1e-6)


def test_a_gaussian_the_cells_do_not_resolve_is_not_accepted() -> None:
    """A start far outside the cells has no trustworthy ELBO: it is -inf, and the search moves only to resolved q."""
    decoder, model, x = linear_gaussian(ORTHOGONAL, n=2)
    post_mean, post_logvar = model.diagonal_posterior(x)
    quad = latent_quadrature(decoder, x, SIGMA, q_mean=post_mean, q_logvar=post_logvar, tol=1e-6, half_width=7.0)
    far = post_mean + torch.tensor([[30.0, 0.0], [0.0, 0.0]], dtype=F64)
    best = best_gaussian(quad, far, post_logvar)
    assert best.start_elbo[0] == -math.inf and math.isfinite(best.start_elbo[1].item())
    assert ((best.q_mass[torch.isfinite(best.elbo)] - 1).abs() <= 1e-4).all()


def test_gap_split_of_a_trained_vae(small_vae) -> None:
    """ELBO(q_phi) <= ELBO(q*) <= log p(x) for every point; the parts add up; q* checked on a rule built for it."""
    model, data = small_vae
    x = data[::25]
    split = vae_gap_split(model, x, tol=1e-3)
    best = split.best
    assert (split.amortization_gap >= 0).all()
    assert (split.approximation_gap >= -1e-6).all()
    torch.testing.assert_close(split.approximation_gap + split.amortization_gap, split.total_gap, rtol=0, atol=1e-12)
    quad, mu, logvar = vae_quadrature(model, x, tol=1e-3)
    torch.testing.assert_close(split.encoder_elbo, exact_terms(quad, mu, logvar).elbo, rtol=0, atol=1e-12)
    assert (best.decrement < 1e-8).all()
    assert ((best.q_mass - 1).abs() <= 1e-4).all()
    assert set(split.start.tolist()) <= set(range(len(STARTS)))
    assert split.amortization_gap.max() > 1e-3            # the encoder is not the best Gaussian everywhere
    # an independent rule, refined around q* instead of q_phi
    check = vae_gaussian_terms(model, x, best.mean, best.logvar, tol=1e-5)
    torch.testing.assert_close(check.elbo, best.elbo, rtol=0, atol=2e-3)
    torch.testing.assert_close(check.kl_posterior, split.approximation_gap, rtol=0, atol=2e-3)


def test_gap_split_runs_on_the_device(small_vae, device) -> None:
    model, data = small_vae
    model = copy.deepcopy(model).to(device)
    split = vae_gap_split(model, data[:4].to(device), tol=1e-2)
    assert split.best.mean.device.type == device.type
    assert (split.amortization_gap >= 0).all()


def test_input_checks(small_vae) -> None:
    decoder, model, x = linear_gaussian(ORTHOGONAL, n=2)
    mean, logvar = model.diagonal_posterior(x)
    quad = latent_quadrature(decoder, x, SIGMA, tol=1e-3)
    with pytest.raises(TypeError, match="quad"):
        best_gaussian("cells", mean, logvar)
    with pytest.raises(TypeError, match="quad"):
        elbo_newton_terms(None, mean, logvar)
    with pytest.raises(ValueError, match="q_mean"):
        best_gaussian(quad, mean[:1], logvar[:1])
    with pytest.raises(ValueError, match="q_mean and q_logvar"):
        best_gaussian(quad, mean, logvar[:, :1])
    with pytest.raises(ValueError, match="q_logvar"):
        best_gaussian(quad, mean, torch.full_like(logvar, math.nan))
    with pytest.raises(ValueError, match="max_iter"):
        best_gaussian(quad, mean, logvar, max_iter=0)
    with pytest.raises(TypeError, match="max_iter"):
        best_gaussian(quad, mean, logvar, max_iter=2.5)
    with pytest.raises(ValueError, match="gain_tol"):
        best_gaussian(quad, mean, logvar, gain_tol=-1.0)
    with pytest.raises(ValueError, match="mass_tol"):
        best_gaussian(quad, mean, logvar, mass_tol=0.0)
    vae, data = small_vae
    with pytest.raises(ValueError, match="search_points"):
        vae_gap_split(vae, data[:2], search_points=0)
    with pytest.raises(ValueError, match="x"):
        vae_gaussian_terms(vae, data[:2, :1], mean, logvar)
    with pytest.raises(ValueError, match="q_mean"):
        vae_gaussian_terms(vae, data[:3], mean, logvar)


def linear_vae(weight: list[list[float]], seed: int = 0) -> tuple[lc.VAE, LinearGaussianModel]:
    """The lab's VAE with four hidden units made exactly linear-Gaussian, t = relu(t) - relu(-t):
    decoder f(z) = W z + b, and an encoder that outputs the best diagonal Gaussian of the exact posterior,
    mean S W^T (x - b) / sigma^2 (affine in x) and the constant log-variances -log (S^-1)_jj."""
    w = torch.tensor(weight, dtype=F64)
    b = torch.tensor([0.3, -0.2], dtype=F64)
    exact = LinearGaussianModel(w, b, SIGMA)
    precision = torch.eye(2, dtype=F64) + w.T @ w / SIGMA**2
    slope = torch.linalg.inv(precision) @ w.T / SIGMA**2          # m(x) = slope (x - b)
    eye = torch.eye(2, dtype=F64)
    vae = lc.VAE(hidden=4).double()
    with torch.no_grad():
        vae.decoder[0].weight.copy_(torch.cat([eye, -eye]))
        vae.decoder[0].bias.zero_()
        vae.decoder[2].weight.copy_(torch.cat([w, -w], dim=1))
        vae.decoder[2].bias.copy_(b)
        vae.decoder_logvar.fill_(math.log(SIGMA**2))
        vae.encoder[0].weight.copy_(torch.cat([slope, -slope]))
        vae.encoder[0].bias.copy_(torch.cat([-slope @ b, slope @ b]))
        vae.encoder[2].weight.copy_(torch.cat([torch.cat([eye, -eye], dim=1), torch.zeros(2, 4, dtype=F64)]))
        vae.encoder[2].bias.copy_(torch.cat([torch.zeros(2, dtype=F64), -torch.log(precision.diagonal())]))
    return vae, exact


def test_gauss_hermite_is_exact_for_a_linear_decoder() -> None:
    """E_q[log p(x|z)] is quadratic in z for a linear decoder: Gauss-Hermite with 2 nodes per axis is exact."""
    vae, exact = linear_vae(CORRELATED)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, generator=g, dtype=F64)
    mean, logvar = torch.randn(6, 2, generator=g, dtype=F64), torch.randn(6, 2, generator=g, dtype=F64) - 1
    w, b = exact.weight, exact.bias
    residual = x - mean @ w.T - b
    trace = torch.einsum("ij,bj,ij->b", w, torch.exp(logvar), w)
    reconstruction = -math.log(2 * math.pi * SIGMA**2) - ((residual**2).sum(1) + trace) / (2 * SIGMA**2)
    expected = reconstruction - standard_normal_kl(mean, logvar)
    for n in (2, 5):
        torch.testing.assert_close(gauss_hermite_elbo(vae, x, mean, logvar, points_per_axis=n), expected, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="points_per_axis"):
        gauss_hermite_elbo(vae, x, mean, logvar, points_per_axis=0)


@pytest.mark.parametrize(("weight", "zero_approximation"), [(ORTHOGONAL, True), (CORRELATED, False)])
def test_gap_split_of_a_linear_vae(weight: list[list[float]], zero_approximation: bool) -> None:
    """An encoder that outputs the best diagonal Gaussian has no amortisation gap; the approximation gap is zero
    for a diagonal posterior and (sum_j log L_jj + log det S) / 2 for every point otherwise."""
    vae, exact = linear_vae(weight)
    x = lc.lab_data()[::100].double() / 4
    split = vae_gap_split(vae, x, tol=1e-6)
    _, cov = exact.posterior(x)
    gap = 0.5 * (torch.log(torch.linalg.inv(cov).diagonal()).sum() + torch.logdet(cov))
    assert (gap < 1e-12) == zero_approximation
    torch.testing.assert_close(split.log_evidence, exact.log_evidence(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(split.approximation_gap, gap.expand(len(x)), rtol=0, atol=1e-6)
    torch.testing.assert_close(split.amortization_gap, torch.zeros(len(x), dtype=F64), rtol=0, atol=1e-8)


def test_gap_split_finds_the_heavier_mode_of_a_bimodal_posterior() -> None:
    """Decoder f(z) = (relu(z1) + 2 relu(-z1), z2): for x = (1, 0) the posterior has two modes, z1 near 1 and near
    -1/2, each Gaussian to within its distance from the kink at z1 = 0 (ten standard deviations). Their masses are
    w+ = N(1; 0, 1 + s^2) and w- = N(1; 0, 4 + s^2) (linear-Gaussian evidences) times the same z2 factor. With the
    encoder on the lighter mode, the best Gaussian is the heavier mode's: the amortisation gap is log(w+ / w-) and
    the approximation gap -log(w+ / (w+ + w-))."""
    s = 0.1
    vae = lc.VAE(hidden=4).double()
    v1, v2 = 1 / (1 + 4 / s**2), 1 / (1 + 1 / s**2)       # the light mode's posterior variances
    with torch.no_grad():
        vae.decoder[0].weight.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]], dtype=F64))
        vae.decoder[0].bias.zero_()
        vae.decoder[2].weight.copy_(torch.tensor([[1.0, 2, 0, 0], [0, 0, 1, -1]], dtype=F64))
        vae.decoder[2].bias.zero_()
        vae.decoder_logvar.fill_(math.log(s**2))
        vae.encoder[0].weight.zero_()
        vae.encoder[0].bias.zero_()
        vae.encoder[2].weight.zero_()
        vae.encoder[2].bias.copy_(torch.tensor([-2 * v1 / s**2, 0.0, math.log(v1), math.log(v2)], dtype=F64))
    x = torch.tensor([[1.0, 0.0]], dtype=F64)
    split = vae_gap_split(vae, x, tol=1e-6)
    w_plus = math.exp(-1 / (2 * (1 + s**2))) / math.sqrt(2 * math.pi * (1 + s**2))
    w_minus = math.exp(-1 / (2 * (4 + s**2))) / math.sqrt(2 * math.pi * (4 + s**2))
    assert split.start.item() > 0                           # not found from the encoder's start
    assert split.best.mean[0, 0].item() == pytest.approx(1 / (1 + s**2), abs=1e-5)
    assert split.amortization_gap.item() == pytest.approx(math.log(w_plus / w_minus), abs=1e-6)
    assert split.approximation_gap.item() == pytest.approx(-math.log(w_plus / (w_plus + w_minus)), abs=1e-6)


def test_split_select_and_means(small_vae) -> None:
    model, data = small_vae
    split = vae_gap_split(model, data[:6], tol=1e-2)
    part = split.select(slice(0, 3))
    torch.testing.assert_close(part.amortization_gap, split.amortization_gap[:3])
    means = part.means()
    assert means["total_gap"] == pytest.approx(means["approximation_gap"] + means["amortization_gap"])
    assert means["amortization_share"] == pytest.approx(means["amortization_gap"] / means["total_gap"])


@settings(max_examples=8)
@given(angle=st.floats(0.0, math.pi), scale_1=st.floats(0.5, 2.0), scale_2=st.floats(0.5, 2.0))
def test_orthogonal_columns_have_no_approximation_gap(angle: float, scale_1: float, scale_2: float) -> None:
    """Property: for W = rotation x diag(scales), any angle and scales, the best diagonal Gaussian is the posterior."""
    c, s = math.cos(angle), math.sin(angle)
    w = torch.tensor([[c * scale_1, -s * scale_2], [s * scale_1, c * scale_2]], dtype=F64)
    decoder, model, x = Linear(w, torch.zeros(2, dtype=F64)), LinearGaussianModel(w, torch.zeros(2, dtype=F64), SIGMA), \
        torch.tensor([[0.7, -0.4], [-1.1, 0.2]], dtype=F64)
    post_mean, post_logvar = model.diagonal_posterior(x)
    start = (post_mean + 0.1, post_logvar + 0.3)
    quad = latent_quadrature(decoder, x, SIGMA, q_mean=start[0], q_logvar=start[1], tol=1e-6)
    best = best_gaussian(quad, *start)
    torch.testing.assert_close(model.log_evidence(x) - best.elbo, torch.zeros(2, dtype=F64), rtol=0, atol=1e-6)


def test_split_elbo_reproduces_the_encoder_and_q_star(small_vae) -> None:
    """GapSplit.elbo evaluates on the split's own cells: it gives back ELBO(q_phi) and ELBO(q*) exactly."""
    model, data = small_vae
    x = data[::40]
    split = vae_gap_split(model, x, tol=1e-2)
    with torch.no_grad():
        mu, logvar = (t.double() for t in model.encode(x))
    value, mass = split.elbo(mu, logvar)
    torch.testing.assert_close(value, split.encoder_elbo, rtol=0, atol=1e-12)
    value, mass = split.elbo(split.best.mean, split.best.logvar)
    torch.testing.assert_close(value, split.best.elbo, rtol=0, atol=1e-12)
    torch.testing.assert_close(mass, split.best.q_mass, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="select"):
        split.select(slice(0, 2)).elbo(mu[:2], logvar[:2])
    with pytest.raises(ValueError, match="q_mean"):
        split.elbo(mu[:2], logvar[:2])


def test_retrain_encoder_freezes_the_decoder_and_raises_the_elbo(small_vae) -> None:
    """Only the encoder trains: the decoder and sigma_x are bit-identical copies; the training ELBO goes up."""
    model, data = small_vae
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new, history = retrain_encoder(model, data, 8, steps=200, lr=3e-2, seed=3)
    for name, value in model.state_dict().items():                        # the input model is untouched
        assert torch.equal(value, before[name])
    for name, value in new.decoder.state_dict().items():                  # the decoder is frozen, bit for bit
        assert torch.equal(value, model.decoder.state_dict()[name])
    assert torch.equal(new.decoder_logvar, model.decoder_logvar)
    assert new.encoder[0].out_features == 8
    assert len(history) == 200
    assert sum(history[-20:]) / 20 > sum(history[:20]) / 20 + 1.0        # the one-sample ELBO rises over training
    _, history_again = retrain_encoder(model, data, 8, steps=200, lr=3e-2, seed=3)
    assert history_again == history                                       # seeded: the same run
    fresh, _ = retrain_encoder(model, data, 8, steps=1, lr=3e-2, seed=3)
    with torch.no_grad():                                                 # the exact ELBO of the new encoder improves on a fresh one
        x = data[::40]
        split = vae_gap_split(model, data[::40], tol=1e-2)
        trained_elbo = split.elbo(*(t.double() for t in new.encode(x)))[0]
        fresh_elbo = split.elbo(*(t.double() for t in fresh.encode(x)))[0]
    assert trained_elbo.mean() > fresh_elbo.mean()
    with pytest.raises(TypeError, match="model"):
        retrain_encoder(torch.nn.Linear(2, 2), data, 8, steps=1)
    with pytest.raises(ValueError, match="hidden"):
        retrain_encoder(model, data, 0, steps=1)
    with pytest.raises(ValueError, match="steps"):
        retrain_encoder(model, data, 8, steps=0)
    with pytest.raises(ValueError, match="lr"):
        retrain_encoder(model, data, 8, steps=1, lr=-1.0)
