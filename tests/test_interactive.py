"""labcode.interactive (the frames of the interactive figures) and labcode.plots.interactive (their Bokeh side).

Frames are checked against independent references: torch.distributions' KL and densities, the
closed form of q(x_t | x_0), Gaussian log-weights whose IWAE bounds are known, and the functions
the chapters use (estimator_spread, prior_matching_kl). The figures are checked for what the page
relies on: the HTML's marker, fallback image and alt text, a Bokeh document whose callbacks index
the frames the way the frames are laid out, and a PNG. The last tests inspect the built pages.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from labcode.diffusion import alpha_bar_schedule, linear_beta_schedule, prior_matching_kl
from labcode.importance import estimator_spread
from labcode.interactive import (
    beta_sweep_frames,
    forward_process_frames,
    iwae_frames,
    kl_explorer_frames,
)
from labcode.plots.interactive import (
    MARKER_CLASS,
    InteractiveFigure,
    beta_sweep_explorer,
    forward_process_explorer,
    iwae_explorer,
    kl_explorer,
)

F64 = torch.float64
MUS, SIGMAS = torch.linspace(-2.0, 3.0, 21), torch.linspace(0.25, 2.0, 8)


# --- KL frames ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kl_frames():
    return kl_explorer_frames(0.0, 0.5, MUS, SIGMAS, torch.linspace(-7.0, 8.0, 121))


def test_kl_frames_match_torch_distributions(kl_frames) -> None:
    p = Normal(torch.tensor(0.0, dtype=F64), torch.tensor(0.5, dtype=F64))
    q = Normal(MUS.double()[None, :], SIGMAS.double()[:, None])
    torch.testing.assert_close(kl_frames.kl_pq, kl_divergence(p, q), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kl_frames.kl_qp, kl_divergence(q, p), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kl_frames.p_density, p.log_prob(kl_frames.grid).exp())
    b, a = kl_frames.index(1.0, 1.5)
    torch.testing.assert_close(kl_frames.q_density[b, a], Normal(1.0, 1.5).log_prob(kl_frames.grid.float()).exp().double(),
                               rtol=1e-5, atol=1e-7)


def test_kl_integrands_integrate_to_the_closed_form() -> None:
    """On a fine grid that holds both densities, the areas of the two integrands are the two KLs."""
    frames = kl_explorer_frames(0.0, 0.5, [-1.0, 1.0], [0.5, 1.5], torch.linspace(-15.0, 15.0, 30001, dtype=F64))
    torch.testing.assert_close(torch.trapezoid(frames.integrand_pq, frames.grid), frames.kl_pq, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(torch.trapezoid(frames.integrand_qp, frames.grid), frames.kl_qp, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(torch.trapezoid(frames.q_density, frames.grid), torch.ones(2, 2, dtype=F64))


def test_kl_frames_properties(kl_frames) -> None:
    assert (kl_frames.kl_pq >= 0).all() and (kl_frames.kl_qp >= 0).all()
    equal = (kl_frames.sigmas - 0.5).abs() < 1e-12
    torch.testing.assert_close(kl_frames.kl_pq[equal], kl_frames.kl_qp[equal])
    assert kl_frames.kl_pq[kl_frames.index(0.0, 0.5)] == 0          # q = p
    wider = kl_frames.sigmas > 0.5
    assert (kl_frames.kl_pq[wider] < kl_frames.kl_qp[wider]).all()   # the direction under the narrower density is smaller
    assert kl_frames.index(0.99, 1.4) == (5, 12)
    assert kl_frames.q_density.shape == (8, 21, 121) and kl_frames.q_density.dtype == F64


@pytest.mark.parametrize(("args", "error", "match"), [
    ((0.0, 0.0, MUS, SIGMAS), ValueError, "sigma_p must be"),
    ((math.nan, 0.5, MUS, SIGMAS), ValueError, "mu_p must be"),
    ((0.0, 0.5, MUS.flip(0), SIGMAS), ValueError, "mus must be strictly increasing"),
    ((0.0, 0.5, MUS, torch.tensor([-1.0, 1.0])), ValueError, "sigmas must be > 0"),
    ((0.0, 0.5, [], SIGMAS), ValueError, "mus must be a non-empty"),
    ((0.0, 0.5, torch.tensor([1, 2]), SIGMAS), TypeError, "mus must be a floating-point"),
])
def test_kl_frames_validate(args, error, match) -> None:
    with pytest.raises(error, match=match):
        kl_explorer_frames(*args, torch.linspace(-1.0, 1.0, 5))
    with pytest.raises(ValueError, match="grid must be strictly increasing"):
        kl_explorer_frames(0.0, 0.5, MUS, SIGMAS, torch.tensor([0.0, 0.0, 1.0]))


# --- β sweep frames -------------------------------------------------------------------------------


def _sweep(n: int = 30) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    data = torch.randn(n, 2, generator=g)
    results = {b: {"latent_means": torch.randn(n, 2, generator=g) / (1 + b), "reconstructions": data + 0.1 * b,
                   "reconstruction": -1.0 - b, "kl_divergence": 2.0 / (1 + b), "elbo": -3.0 - b / 2, "model": None}
               for b in (10.0, 0.0, 1.0)}
    return results, data


def test_beta_frames_collect_the_results_in_beta_order() -> None:
    results, data = _sweep()
    frames = beta_sweep_frames(results, data, stride=3)
    assert frames.betas == [0.0, 1.0, 10.0]
    assert torch.equal(frames.index, torch.arange(0, 30, 3))
    for s, b in enumerate(frames.betas):
        torch.testing.assert_close(frames.latent_means[s], results[b]["latent_means"][::3].double())
        torch.testing.assert_close(frames.reconstructions[s], results[b]["reconstructions"][::3].double())
        assert frames.kl[s].item() == results[b]["kl_divergence"] and frames.elbo[s].item() == results[b]["elbo"]
        assert frames.reconstruction[s].item() == results[b]["reconstruction"]
    torch.testing.assert_close(frames.data, data[::3].double())


def test_beta_frames_validate() -> None:
    results, data = _sweep()
    with pytest.raises(ValueError, match="non-empty mapping"):
        beta_sweep_frames({}, data)
    with pytest.raises(ValueError, match="stride must be > 0"):
        beta_sweep_frames(results, data, stride=0)
    with pytest.raises(ValueError, match=r"lacks \['elbo'\]"):
        beta_sweep_frames({0.0: {k: v for k, v in results[0.0].items() if k != "elbo"}}, data)
    with pytest.raises(ValueError, match="must have the shape of data"):
        beta_sweep_frames(results, data[:10])
    with pytest.raises(ValueError, match="must have 2 columns"):
        beta_sweep_frames(results, torch.zeros(30, 3))


# --- forward-process frames -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def schedule() -> torch.Tensor:
    return alpha_bar_schedule(linear_beta_schedule(1000))


def test_forward_frames_are_the_closed_form_with_one_noise_draw(schedule) -> None:
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(1)) * 5
    frames = forward_process_frames(x0, schedule, [0, 10, 500, 1000], generator=torch.Generator().manual_seed(2))
    eps = torch.randn(50, 2, generator=torch.Generator().manual_seed(2)).double()
    torch.testing.assert_close(frames.eps, eps)
    for f, t in enumerate(frames.steps):
        a = schedule[t].item()
        torch.testing.assert_close(frames.xt[f], math.sqrt(a) * x0.double() + math.sqrt(1 - a) * eps)
    torch.testing.assert_close(frames.xt[0], x0.double())
    again = forward_process_frames(x0, schedule, [0, 10, 500, 1000], generator=torch.Generator().manual_seed(2))
    assert torch.equal(again.xt, frames.xt)


def test_forward_frames_prior_kl(schedule) -> None:
    x0 = torch.randn(40, 2, generator=torch.Generator().manual_seed(3)).double() * 4
    frames = forward_process_frames(x0, schedule, [0, 100, 1000], eps=torch.zeros(40, 2))
    assert frames.prior_kl[0] == math.inf
    for f, t in enumerate(frames.steps[1:], start=1):
        a = schedule[t]
        reference = kl_divergence(Normal(a.sqrt() * x0, (1 - a).sqrt().expand_as(x0)), Normal(0.0, 1.0)).sum(1).mean()
        torch.testing.assert_close(frames.prior_kl[f], reference)
        torch.testing.assert_close(frames.prior_kl[f], prior_matching_kl(x0, a).mean())


def test_forward_frames_are_samples_of_the_marginal(schedule) -> None:
    """Each single frame of many copies of one point has the mean and variance of q(x_t | x_0)."""
    x0 = torch.tensor([[3.0, -2.0]]).expand(20_000, 2)
    frames = forward_process_frames(x0, schedule, [250], generator=torch.Generator().manual_seed(4))
    a = schedule[250].item()
    sample = frames.xt[0]
    assert (sample.mean(0) - math.sqrt(a) * x0[0].double()).abs().max() < 4 * math.sqrt((1 - a) / 20_000)
    assert (sample.var(0) - (1 - a)).abs().max() < 4 * (1 - a) * math.sqrt(2 / 20_000)


def test_forward_frames_validate(schedule) -> None:
    x0 = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="steps must be increasing"):
        forward_process_frames(x0, schedule, [10, 5])
    with pytest.raises(ValueError, match=r"within \[0, 1000\]"):
        forward_process_frames(x0, schedule, [0, 1001])
    with pytest.raises(TypeError, match="sequence of ints"):
        forward_process_frames(x0, schedule, [0.5])
    with pytest.raises(ValueError, match="eps must have the shape"):
        forward_process_frames(x0, schedule, [0, 1], eps=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x0 must have shape"):
        forward_process_frames(torch.zeros(5), schedule, [0])


# --- IWAE frames ----------------------------------------------------------------------------------


def _gaussian_log_weights(s: float = 0.5, n: int = 200_000) -> torch.Tensor:
    """log w ~ N(-s^2/2, s^2): then E[w] = 1 (log p(x) = 0), the ELBO is -s^2/2, and L_K is known to rise between."""
    return -s**2 / 2 + s * torch.randn(2, n, generator=torch.Generator().manual_seed(5), dtype=F64)


def test_iwae_frames_are_the_studys_estimates_and_between_the_bounds() -> None:
    log_w = _gaussian_log_weights()
    sizes = [1, 3, 10, 100, 1000]
    frames = iwae_frames(log_w, sizes, torch.zeros(2), torch.full((2,), -0.125), max_repeats=2000)
    study = estimator_spread(log_w, sizes, max_repeats=2000)
    torch.testing.assert_close(frames.bound, study.log_estimate_mean, rtol=0, atol=0)
    torch.testing.assert_close(frames.stderr, study.log_estimate_std / torch.tensor(study.repeats).double().sqrt())
    assert frames.repeats.tolist() == [2000, 2000, 2000, 2000, 200]
    # K = 1: the mean of the first 2000 log-weights, an estimate of the ELBO
    torch.testing.assert_close(frames.bound[:, 0], log_w[:, :2000].mean(1))
    assert ((frames.bound[:, 0] + 0.125).abs() < 3 * frames.stderr[:, 0]).all()
    assert (frames.bound <= 3 * frames.stderr).all()                   # below log p(x) = 0, up to noise
    assert (frames.bound[:, -1] > frames.bound[:, 0]).all()            # and rising with K
    # the delta method: L_K ~ log p - (C - 1) / (2K), C = E[w^2] = exp(s^2)
    expected = -(math.exp(0.25) - 1) / (2 * 100)
    assert ((frames.bound[:, 3] - expected).abs() < 4 * frames.stderr[:, 3]).all()


def test_iwae_histograms_hold_every_run() -> None:
    frames = iwae_frames(_gaussian_log_weights(n=20_000), [1, 10, 100], torch.zeros(2), torch.full((2,), -0.125),
                         bins=25, tail=0.05)
    width = frames.edges[..., 1] - frames.edges[..., 0]
    torch.testing.assert_close((frames.density * width[..., None]).sum(-1), torch.ones(2, 3, dtype=F64))
    assert frames.density.shape == (2, 3, 25) and frames.edges.shape == (2, 3, 26)
    assert (frames.edges[..., 0] <= -0.125).all() and (frames.edges[..., -1] >= 0).all()   # both exact values drawn
    spans = frames.edges[..., -1] - frames.edges[..., 0]
    assert (spans.diff(dim=1) < 0).all()                                 # the runs concentrate as K grows


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"sizes": [10, 1]}, ValueError, "sizes must be increasing"),
    ({"sizes": [1, 30_000]}, ValueError, r"within \[1, 1000\]"),
    ({"sizes": [True]}, TypeError, "sequence of ints"),
    ({"log_evidence": torch.zeros(3)}, ValueError, r"log_evidence must have shape \(2,\)"),
    ({"elbo": torch.tensor([0.0, math.nan])}, ValueError, "elbo must be finite"),
    ({"tail": 0.5}, ValueError, "tail must lie in"),
    ({"bins": 0}, ValueError, "bins must be > 0"),
    ({"max_repeats": 0}, ValueError, "max_repeats must be > 0"),
])
def test_iwae_frames_validate(kwargs, error, match) -> None:
    args = {"log_weights": _gaussian_log_weights(n=1000), "sizes": [1, 10], "log_evidence": torch.zeros(2),
            "elbo": torch.zeros(2)} | kwargs
    extra = {k: args.pop(k) for k in ("tail", "bins", "max_repeats") if k in args}
    with pytest.raises(error, match=match):
        iwae_frames(args["log_weights"], args["sizes"], args["log_evidence"], args["elbo"], **extra)


def test_iwae_frames_reject_nan_weights() -> None:
    log_w = _gaussian_log_weights(n=100)
    log_w[0, 3] = math.nan
    with pytest.raises(ValueError, match="log_weights must be finite"):
        iwae_frames(log_w, [1], torch.zeros(2), torch.zeros(2))


# --- the figures ----------------------------------------------------------------------------------


def _bokeh_item(fig: InteractiveFigure) -> dict:
    match = re.search(r'<script type="application/json" id="[^"]+-item">(.*?)</script>', fig.html, re.S)
    assert match, "the HTML must carry the Bokeh document as JSON"
    return json.loads(match.group(1).replace("<\\/", "</"))


def _callback_args(item: dict) -> dict:
    """The ``args`` of the document's CustomJS callback, ndarrays decoded (the frames the page looks up)."""
    found = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("name") == "CustomJS" and node.get("type") == "object":
                found.append(node["attributes"]["args"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(item["doc"])
    assert found, "no CustomJS callback in the document"

    def decode(value):
        if isinstance(value, dict) and value.get("type") == "ndarray":
            data = base64.b64decode(value["array"]["data"])
            if data[:2] == b"\x1f\x8b":                                # Bokeh gzips arrays that compress well
                data = gzip.decompress(data)
            return np.frombuffer(data, dtype=value["dtype"]).reshape(value["shape"])
        return value

    return {k: decode(v) for k, v in found[0]["entries"]}


def _check_figure(fig: InteractiveFigure, names: set[str]) -> dict:
    bundle = fig._repr_mimebundle_()
    assert set(bundle) == {"text/html", "image/png", "text/plain"}
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    page = bundle["text/html"]
    assert f'class="{MARKER_CLASS}"' in page
    fallback = re.search(r'<img class="labcode-interactive-fallback" src="data:image/png;base64,([^"]+)" alt="([^"]+)">', page)
    assert fallback and base64.b64decode(fallback.group(1)) == fig.png
    assert "window.Bokeh" in page and page.count("</script>") == 2      # the JSON cannot close its script early
    item = _bokeh_item(fig)
    text = json.dumps(item)
    for name in names:
        assert f'"name": "{name}"' in text, f"no model named {name!r}"
    return item


def test_kl_explorer_looks_up_the_frames_it_was_given(kl_frames, rc_unchanged) -> None:
    fig = kl_explorer(kl_frames, mu=1.0, sigma=1.5)
    args = _callback_args(_check_figure(fig, {"mu", "sigma", "readout", "curves"}))
    b, a = kl_frames.index(0.25, 0.75)
    k, m = b * args["n_mu"] + a, args["m"]                         # the callback's indexing
    np.testing.assert_allclose(args["q"][k * m:(k + 1) * m], kl_frames.q_density[b, a].numpy(), rtol=1e-6)
    np.testing.assert_allclose(args["iqp"][k * m:(k + 1) * m], kl_frames.integrand_qp[b, a].numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(args["kl_qp"][k], kl_frames.kl_qp[b, a].item(), rtol=1e-6)
    start = json.dumps(_bokeh_item(fig), ensure_ascii=False)          # the readout at the start
    assert "KL(p‖q)</b> = 0.876" in start and "KL(q‖p)</b> = 4.901" in start
    with pytest.raises(ValueError, match="evenly spaced"):
        kl_explorer(kl_explorer_frames(0.0, 0.5, [0.0, 1.0, 3.0], [1.0], torch.linspace(-1.0, 1.0, 3)), mu=0.0, sigma=1.0)


def test_beta_sweep_explorer(rc_unchanged) -> None:
    results, data = _sweep()
    frames = beta_sweep_frames(results, data)
    fig = beta_sweep_explorer(frames, beta=1.0)
    args = _callback_args(_check_figure(fig, {"beta", "readout", "points"}))
    n = args["n"]
    np.testing.assert_allclose(args["means"].reshape(3, n, 2), frames.latent_means.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="beta must be one of"):
        beta_sweep_explorer(frames, beta=0.5)


def test_forward_process_explorer(schedule, rc_unchanged) -> None:
    frames = forward_process_frames(torch.randn(20, 2, generator=torch.Generator().manual_seed(6)), schedule,
                                    list(range(0, 1001, 100)), generator=torch.Generator().manual_seed(7))
    fig = forward_process_explorer(frames, t=0, static_steps=(0, 500, 1000))
    args = _callback_args(_check_figure(fig, {"t", "readout", "points", "t-marker"}))
    np.testing.assert_allclose(args["xt"].reshape(11, 20, 2), frames.xt.numpy(), rtol=1e-6, atol=1e-6)
    assert args["kl"][0] is None                                    # t = 0: the readout shows ∞
    with pytest.raises(ValueError, match="t must be one of"):
        forward_process_explorer(frames, t=50)
    with pytest.raises(ValueError, match="subset of the frames' steps"):
        forward_process_explorer(frames, static_steps=(0, 50))


def test_iwae_explorer(rc_unchanged) -> None:
    frames = iwae_frames(_gaussian_log_weights(n=20_000), [1, 10, 100, 1000], torch.zeros(2), torch.full((2,), -0.125))
    fig = iwae_explorer(frames, ["first", "second"], point=1, k=10)
    args = _callback_args(_check_figure(fig, {"point", "k", "readout", "curve", "histogram", "span-log-p"}))
    i, s = 1, 2
    lo = (i * args["n_sizes"] + s) * args["n_bins"]
    np.testing.assert_allclose(args["density"][lo:lo + args["n_bins"]], frames.density[i, s].numpy(), rtol=1e-6)
    assert "second point, K = 10" in json.dumps(_bokeh_item(fig), ensure_ascii=False)
    with pytest.raises(ValueError, match="labels must name the 2 points"):
        iwae_explorer(frames, ["one"])
    with pytest.raises(ValueError, match="k must be one of"):
        iwae_explorer(frames, ["a", "b"], k=7)


def test_interactive_figure_validates_and_is_deterministic(kl_frames) -> None:
    a, b = kl_explorer(kl_frames, mu=1.0, sigma=1.5), kl_explorer(kl_frames, mu=1.0, sigma=1.5)
    assert a.png == b.png
    assert re.sub(r'"p\d+"', "", a.html) == re.sub(r'"p\d+"', "", b.html)      # equal up to Bokeh's model ids
    with pytest.raises(ValueError, match="name must be"):
        kl_explorer(kl_frames, mu=1.0, sigma=1.5, name="Bad Name")
    with pytest.raises(ValueError, match="alt must be"):
        kl_explorer(kl_frames, mu=1.0, sigma=1.5, alt=" ")


# --- the built pages ------------------------------------------------------------------------------

#: the pages with an interactive figure and the figure's name
PAGES = {"book/kl": "kl-explorer", "book/two_forces": "beta-sweep", "book/diffusion": "forward-process",
         "book/exact": "iwae-bound"}
PAGE_LIMIT = 1_000_000   # bytes of HTML and images per page, the limit test_browser.py sets for images alone


def page_weight(built: Path, doc: str) -> int:
    """Bytes of the page's HTML (inline frames and fallback images included) and of the local images it shows."""
    page = built / f"{doc}.html"
    html = page.read_text()
    sources = set(re.findall(r'<img[^>]+src="([^"]+)"', html))
    images = [(page.parent / s).resolve() for s in sources if not s.startswith(("http", "data:"))]
    return page.stat().st_size + sum(p.stat().st_size for p in images if p.is_file())


@pytest.mark.parametrize("doc", sorted(PAGES))
def test_page_with_interactive_figure_weighs_at_most_1mb(built_book: Path, doc: str) -> None:
    weight = page_weight(built_book, doc)
    assert weight <= PAGE_LIMIT, f"{doc}: HTML and images weigh {weight / 1e6:.2f} MB"


@pytest.mark.parametrize("doc", sorted(PAGES))
def test_page_serves_bokeh_itself_and_the_cells_alt_text(built_book: Path, doc: str) -> None:
    import bokeh

    html = (built_book / f"{doc}.html").read_text()
    scripts = re.findall(r'<script src="([^"]*bokeh[^"]*)"', html)
    paths = [s.split("?")[0] for s in scripts]
    assert [Path(s).name for s in paths] == [f"bokeh-{bokeh.__version__}.min.js", f"bokeh-widgets-{bokeh.__version__}.min.js"]
    for script in paths:
        assert not script.startswith(("http", "//")) and (built_book / Path(doc).parent / script).resolve().is_file()
    figure = re.search(r'<figure[^>]*id="fig-[^"]+">\s*<div class="output text_html"><div class="labcode-interactive" '
                       rf'id="labcode-interactive-{PAGES[doc]}">.*?</figure>', html, re.S)
    assert figure, f"{doc}: the interactive figure is not inside a numbered figure"
    # attribute order varies (sphinx-codeautolink re-serialises the pages it links)
    fallback = re.search(r'<img[^>]*\bclass="labcode-interactive-fallback"[^>]*>', figure.group(0))
    assert fallback, f"{doc}: no static fallback image in the figure"
    alt = re.search(r'\balt="([^"]+)"', fallback.group(0)).group(1)
    source = (built_book.parents[1] / f"{doc}.md").read_text()
    assert alt.replace("&#x27;", "'") in source, f"{doc}: the fallback's alt text is not the cell's image alt"
    assert "<figcaption>" in figure.group(0)


def test_pages_without_interactive_figures_do_not_load_bokeh(built_book: Path) -> None:
    for doc in ("book/intro", "book/jensen", "book/iwae"):
        assert "bokeh" not in (built_book / f"{doc}.html").read_text()
