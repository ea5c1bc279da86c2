"""The book's interactive figures: Bokeh plots whose sliders and buttons look up frames computed by labcode.

Each function takes the frames of :mod:`labcode.interactive` and returns an
:class:`InteractiveFigure`. In Jupyter and in the built book it displays as

* ``text/html``: a Bokeh document (plots, controls, a readout of the frame's numbers) whose
  ``CustomJS`` callbacks only copy precomputed frames into the plotted data, and a static image as a
  fallback, shown until BokehJS renders the plot and kept for readers without JavaScript (and for
  Colab, where BokehJS is not loaded): the inline script does nothing unless ``window.Bokeh`` exists;
* ``image/png``: the same static image, which the PDF (myst-nb's LaTeX builder prefers it) shows.

The static image is a matplotlib figure of a few frames in the house style (:mod:`.style`);
nothing here samples, trains or changes global matplotlib state. The book serves BokehJS itself
(``_ext/bokeh_figures``: the files of the installed ``bokeh`` package, on the pages that need them).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..interactive import BetaSweepFrames, ForwardFrames, IWAEFrames, KLFrames
from .diffusion import _latex_number
from .style import COLORS, DPI, POINT_COLORS, new_figure, panel_label, styled, to_numpy
from .vae import PRIOR_RADII, prior_circles, spiral_scatter

#: the marker class of an interactive figure's HTML; the Sphinx extension loads BokehJS on pages that contain it
MARKER_CLASS = "labcode-interactive"
#: plot sizes in CSS pixels: two panels side by side fit the book's text column
PANEL_WIDTH, PANEL_HEIGHT = 315, 290
#: slider widths: two side by side fit above two panels
SLIDER_WIDTH = 290
_FONT = "12px"
_VIRIDIS = None   # filled on first use (bokeh.palettes is imported lazily, like the rest of Bokeh)


class InteractiveFigure:
    """An interactive figure: its HTML (Bokeh document + static fallback) and its static PNG.

    Attributes:
        name: an identifier, unique on its page (letters, digits and hyphens); the HTML's element ids derive from it.
        html: the ``text/html`` output.
        png: the static image, PNG bytes.
    """

    def __init__(self, name: str, layout: object, static: Figure, alt: str) -> None:
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9-]*", name):
            raise ValueError(f"name must be lower-case letters, digits and hyphens, got {name!r}")
        if not isinstance(alt, str) or not alt.strip():
            raise ValueError("alt must be a non-empty description of the static image")
        self.name = name
        self.png = _png(static)
        self.html = _html(name, layout, self.png, alt)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"text/html": self.html, "image/png": base64.b64encode(self.png).decode("ascii"),
                "text/plain": f"<interactive figure {self.name!r}>"}


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes at the house resolution (its constrained layout sets the margins: one drawing pass)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


#: runs in the page: renders the Bokeh document if BokehJS is there, labels the sliders for screen
#: readers (noUiSlider's handles carry no name), then hides the static fallback
_EMBED_JS = """(function () {
  var name = %(name)s;
  function labelSliders(node) {
    var roots = [node];
    while (roots.length) {
      var root = roots.pop();
      var handle = root.querySelector && root.querySelector(".noUi-handle");
      var title = root.querySelector && root.querySelector(".bk-slider-title");
      if (handle && title && title.firstChild) {
        handle.setAttribute("aria-label", title.firstChild.textContent.replace(/[:\\s]+$/, ""));
      }
      var all = root.querySelectorAll ? root.querySelectorAll("*") : [];
      for (var i = 0; i < all.length; i++) { if (all[i].shadowRoot) { roots.push(all[i].shadowRoot); } }
    }
  }
  function start() {
    var box = document.getElementById("labcode-interactive-" + name);
    if (!box || box.dataset.rendered || !window.Bokeh || !window.Bokeh.embed) { return; }
    box.dataset.rendered = "1";
    var item = JSON.parse(document.getElementById(name + "-item").textContent);
    window.Bokeh.embed.embed_item(item, name + "-plot").then(function () {
      labelSliders(box);
      box.classList.add("labcode-interactive-live");
      var fallback = box.querySelector(".labcode-interactive-fallback");
      if (fallback) { fallback.hidden = true; }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();"""


def _html(name: str, layout: object, png: bytes, alt: str) -> str:
    from bokeh.embed import json_item

    item = json.dumps(json_item(layout), separators=(",", ":")).replace("</", "<\\/")
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<div class="{MARKER_CLASS}" id="{MARKER_CLASS}-{name}">'
            f'<div class="{MARKER_CLASS}-plot" id="{name}-plot"></div>'
            f'<img class="{MARKER_CLASS}-fallback" src="{src}" alt="{html.escape(alt)}">'
            f'<script type="application/json" id="{name}-item">{item}</script>'
            f'<script>{_EMBED_JS % {"name": json.dumps(name)}}</script></div>')


# --- Bokeh building blocks -----------------------------------------------------------------------


def _panel(x_label: str, y_label: str, *, width: int = PANEL_WIDTH, height: int = PANEL_HEIGHT, **kw):
    """A Bokeh figure in the house style: no toolbar, white background, labelled axes."""
    from bokeh.plotting import figure

    fig = figure(width=width, height=height, toolbar_location=None, tools="", background_fill_color="white",
                 border_fill_color="white", min_border_left=50, min_border_bottom=45, **kw)
    fig.xaxis.axis_label, fig.yaxis.axis_label = x_label, y_label
    for axis in (*fig.xaxis, *fig.yaxis):
        axis.axis_label_text_font_size = _FONT
        axis.axis_label_text_font_style = "normal"
        axis.axis_label_text_color = "#222222"
        axis.major_label_text_font_size = "11px"
        axis.major_label_text_color = "#222222"
    fig.grid.grid_line_alpha = 0.3
    fig.outline_line_color = None
    return fig


def _legend(fig) -> None:
    """The legend above the plot area, where moving curves cannot run into it."""
    legend = fig.legend[0]
    legend.label_text_font_size = "11px"
    legend.label_text_color = "#222222"
    legend.border_line_alpha = 0.0
    legend.padding = 2
    legend.spacing = 0
    legend.margin = 0
    legend.label_height = 14
    legend.glyph_height = 14
    fig.add_layout(legend, "above")


def _row(*children):
    """A row that wraps onto a second line on a narrow screen (a phone) instead of overflowing."""
    from bokeh.layouts import row

    return row(*children, styles={"flex-wrap": "wrap"})


def _readout(text: str, name: str = "readout"):
    from bokeh.models import Div

    return Div(text=text, name=name, styles={"font-size": "14px", "color": "#222222", "margin-top": "4px"})


def _f32(values) -> np.ndarray:
    """Frames as a flat float32 array (4 bytes a value on the page)."""
    return np.ascontiguousarray(to_numpy(values), dtype=np.float32).ravel()


def _viridis_mapper(n: int):
    from bokeh.palettes import Viridis256
    from bokeh.transform import linear_cmap

    return linear_cmap("position", Viridis256, 0, max(n - 1, 1))


def _fmt(value: float, digits: int = 3) -> str:
    """A number as the readout shows it (the JavaScript side uses the same ``toFixed``)."""
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}".replace("-", "−")


_JS_FMT = """function fmt(v, d) { if (!isFinite(v)) { return "∞"; } return v.toFixed(d).replace("-", "\u2212"); }"""


# --- KL asymmetry explorer -----------------------------------------------------------------------


def _kl_readout(frames: KLFrames, b: int, a: int) -> str:
    return (f"<b>KL(p‖q)</b> = {_fmt(frames.kl_pq[b, a].item())} nats &nbsp;·&nbsp; "
            f"<b>KL(q‖p)</b> = {_fmt(frames.kl_qp[b, a].item())} nats")


def kl_explorer(frames: KLFrames, *, mu: float, sigma: float, name: str = "kl-explorer",
                static_settings: Sequence[tuple[float, float]] | None = None,
                alt: str = "The densities and the two KL integrands for a few choices of q.") -> InteractiveFigure:
    """The KL asymmetry explorer: sliders for q's mean and standard deviation against the fixed p.

    (a) the densities :math:`p` (filled) and :math:`q`; (b) the integrands :math:`p\\log(p/q)` and
    :math:`q\\log(q/p)`, whose areas are the two KLs; the readout gives both KLs in closed form.
    The sliders start at the grid point nearest to ``(mu, sigma)``. The static image shows
    ``static_settings`` (default: the start and two more grid points), one column each.
    """
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, Slider

    _check_uniform("frames.mus", frames.mus)
    _check_uniform("frames.sigmas", frames.sigmas)
    b, a = frames.index(mu, sigma)
    x = to_numpy(frames.grid)
    source = ColumnDataSource({"x": x, "p": to_numpy(frames.p_density), "zero": np.zeros_like(x),
                               "q": to_numpy(frames.q_density[b, a]), "ipq": to_numpy(frames.integrand_pq[b, a]),
                               "iqp": to_numpy(frames.integrand_qp[b, a])}, name="curves")
    p_label = f"p = N({frames.mu_p:g}, {frames.sigma_p:g}²)"
    dens = _panel("x", "density")
    dens.varea("x", "zero", "p", source=source, fill_color=COLORS["p"], fill_alpha=0.25)
    dens.line("x", "p", source=source, color=COLORS["p"], line_width=2, legend_label=p_label)
    dens.line("x", "q", source=source, color=COLORS["q"], line_width=2, legend_label="q = N(μ, σ²)")
    _legend(dens)
    integ = _panel("x", "integrand", x_range=dens.x_range)
    integ.varea("x", "zero", "ipq", source=source, fill_color=COLORS["p"], fill_alpha=0.3)
    integ.line("x", "ipq", source=source, color=COLORS["p"], line_width=2, legend_label="p log(p/q): area KL(p‖q)")
    integ.varea("x", "zero", "iqp", source=source, fill_color=COLORS["q"], fill_alpha=0.3)
    integ.line("x", "iqp", source=source, color=COLORS["q"], line_width=2, line_dash="dashed",
               legend_label="q log(q/p): area KL(q‖p)")
    integ.line("x", "zero", source=source, color=COLORS["data"], line_width=1)
    _legend(integ)

    mus, sigmas = to_numpy(frames.mus), to_numpy(frames.sigmas)
    mu_slider = Slider(start=mus[0], end=mus[-1], step=_step(mus), value=mus[a], title="mean μ of q", name="mu",
                       format="0.00", width=SLIDER_WIDTH)
    sigma_slider = Slider(start=sigmas[0], end=sigmas[-1], step=_step(sigmas), value=sigmas[b],
                          title="standard deviation σ of q", name="sigma", format="0.00", width=SLIDER_WIDTH)
    readout = _readout(_kl_readout(frames, b, a))
    callback = CustomJS(args={
        "source": source, "mu": mu_slider, "sigma": sigma_slider, "readout": readout,
        "q": _f32(frames.q_density), "ipq": _f32(frames.integrand_pq), "iqp": _f32(frames.integrand_qp),
        "kl_pq": _f32(frames.kl_pq), "kl_qp": _f32(frames.kl_qp), "n_mu": len(mus), "m": len(x),
    }, code=_JS_FMT + """
const a = Math.round((mu.value - mu.start) / mu.step), b = Math.round((sigma.value - sigma.start) / sigma.step);
const k = b * n_mu + a, lo = k * m, hi = lo + m;
const data = Object.assign({}, source.data);
data.q = Array.from(q.slice(lo, hi)); data.ipq = Array.from(ipq.slice(lo, hi)); data.iqp = Array.from(iqp.slice(lo, hi));
source.data = data;
readout.text = "<b>KL(p‖q)</b> = " + fmt(kl_pq[k], 3) + " nats &nbsp;·&nbsp; <b>KL(q‖p)</b> = " + fmt(kl_qp[k], 3) + " nats";
""")
    mu_slider.js_on_change("value", callback)
    sigma_slider.js_on_change("value", callback)
    layout = column(_row(mu_slider, sigma_slider), _row(dens, integ), readout)

    settings = list(static_settings) if static_settings is not None else _default_kl_settings(frames, b, a)
    return InteractiveFigure(name, layout, plot_kl_frames(frames, settings), alt)


def _default_kl_settings(frames: KLFrames, b: int, a: int) -> list[tuple[float, float]]:
    """The start, q as wide as p at the same mean, and q narrower than p at p's mean."""
    b_equal, _ = frames.index(frames.mu_p, frames.sigma_p)
    _, a_p = frames.index(frames.mu_p, frames.sigma_p)
    return [(frames.mus[a].item(), frames.sigmas[b].item()), (frames.mus[a].item(), frames.sigmas[b_equal].item()),
            (frames.mus[a_p].item(), frames.sigmas[0].item())]


@styled
def plot_kl_frames(frames: KLFrames, settings: Sequence[tuple[float, float]]) -> Figure:
    """Static frames of the KL explorer: one column per ``(mu, sigma)`` in ``settings`` (nearest grid point).

    Top row: :math:`p` (filled) and :math:`q`; bottom row: the integrands :math:`p\\log(p/q)` (solid)
    and :math:`q\\log(q/p)` (dashed), with both KLs above the panel. The x axis is cut to where
    some drawn curve is above a thousandth of its largest value.
    """
    if not settings:
        raise ValueError("settings must name at least one (mu, sigma)")
    x, p = to_numpy(frames.grid), to_numpy(frames.p_density)
    chosen = [frames.index(mu, sigma) for mu, sigma in settings]
    curves = np.stack([np.abs(to_numpy(t[b, a])) for b, a in chosen
                       for t in (frames.q_density, frames.integrand_pq, frames.integrand_qp)] + [p])
    visible = np.nonzero((curves > 1e-3 * curves.max(axis=1, keepdims=True)).any(axis=0))[0]
    x_lim = (x[visible[0]], x[visible[-1]])
    fig, axes = new_figure(2, len(settings), width=6.4, height=4.6, squeeze=False, sharex=True)
    for j, (b, a) in enumerate(chosen):
        ax_d, ax_i = axes[0, j], axes[1, j]
        ax_d.fill_between(x, 0, p, color=COLORS["p"], alpha=0.25, lw=0)
        ax_d.plot(x, p, color=COLORS["p"], label="$p$")
        ax_d.plot(x, to_numpy(frames.q_density[b, a]), color=COLORS["q"], label="$q$")
        ax_d.set_title(f"$\\mu = {frames.mus[a].item():g}$, $\\sigma = {frames.sigmas[b].item():g}$")
        ipq, iqp = to_numpy(frames.integrand_pq[b, a]), to_numpy(frames.integrand_qp[b, a])
        ax_i.fill_between(x, 0, ipq, color=COLORS["p"], alpha=0.3, lw=0)
        ax_i.plot(x, ipq, color=COLORS["p"], label=r"$p\,\log(p/q)$")
        ax_i.fill_between(x, 0, iqp, color=COLORS["q"], alpha=0.3, lw=0)
        ax_i.plot(x, iqp, color=COLORS["q"], ls="--", label=r"$q\,\log(q/p)$")
        ax_i.axhline(0, color=COLORS["data"], lw=0.8)
        ax_i.set_title(f"KL$(p\\|q)$ = {frames.kl_pq[b, a].item():.3f}\nKL$(q\\|p)$ = {frames.kl_qp[b, a].item():.3f}",
                       fontsize=9)
        ax_i.set_xlabel("$x$")
    axes[0, 0].set_xlim(*x_lim)
    axes[0, 0].set_ylabel("density")
    axes[1, 0].set_ylabel("integrand")
    handles = [h for ax in (axes[0, 0], axes[1, 0]) for h in ax.get_legend_handles_labels()[0]]
    labels = [t for ax in (axes[0, 0], axes[1, 0]) for t in ax.get_legend_handles_labels()[1]]
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=9)
    panel_label(axes[0, 0], "(a)")
    panel_label(axes[1, 0], "(b)")
    return fig


def _step(values: np.ndarray) -> float:
    return float(values[1] - values[0]) if len(values) > 1 else 1.0


def _check_uniform(name: str, values) -> None:
    v = to_numpy(values)
    if len(v) > 1 and not np.allclose(np.diff(v), v[1] - v[0], rtol=1e-6, atol=1e-9):
        raise ValueError(f"{name} must be evenly spaced (a slider's steps), got {v.tolist()}")


# --- The β sweep ---------------------------------------------------------------------------------


def _beta_readout(frames: BetaSweepFrames, s: int) -> str:
    return (f"<b>β = {frames.betas[s]:g}</b>: reconstruction {_fmt(frames.reconstruction[s].item())}, "
            f"KL {_fmt(frames.kl[s].item())}, ELBO {_fmt(frames.elbo[s].item())} (nats per point)")


def beta_sweep_explorer(frames: BetaSweepFrames, *, beta: float = 1.0, name: str = "beta-sweep",
                        radii: Sequence[float] = PRIOR_RADII,
                        alt: str = "Latent means and reconstructions for every β of the sweep.") -> InteractiveFigure:
    """The β sweep one β at a time: buttons choose β.

    (a) the encoder means :math:`\\mu_\\phi(x_i)`, coloured by position along the spiral, over the
    prior's contours (same axes for every β); (b) the data (grey) and their reconstructions,
    coloured the same way. The readout gives the sweep's averaged terms for the chosen β. The
    static image shows every β, one column each.
    """
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, RadioButtonGroup

    if float(beta) not in frames.betas:
        raise ValueError(f"beta must be one of the sweep's {frames.betas}, got {beta}")
    s = frames.betas.index(float(beta))
    n = frames.data.shape[0]
    means, recs, data = to_numpy(frames.latent_means), to_numpy(frames.reconstructions), to_numpy(frames.data)
    points = ColumnDataSource({"position": np.arange(n), "zx": means[s, :, 0], "zy": means[s, :, 1],
                               "rx": recs[s, :, 0], "ry": recs[s, :, 1]}, name="points")
    colour = _viridis_mapper(n)
    lim = max(1.07 * max(radii), 1.08 * float(np.abs(means).max()))
    latent = _panel("z₁", "z₂", x_range=(-lim, lim), y_range=(-lim, lim), match_aspect=True)
    for r in radii:
        latent.circle(x=0, y=0, radius=r, fill_color=None, line_color=COLORS["p"], line_dash="dashed", line_alpha=0.8)
    latent.scatter("zx", "zy", source=points, size=4, color=colour, alpha=0.85)
    pad = 0.08 * float(np.abs(data).max())
    x_range = (float(data[:, 0].min()) - pad, float(data[:, 0].max()) + pad)
    y_range = (float(data[:, 1].min()) - pad, float(data[:, 1].max()) + pad)
    recon = _panel("x₁", "x₂", x_range=x_range, y_range=y_range, match_aspect=True)
    recon.scatter(data[:, 0], data[:, 1], size=3, color=COLORS["muted"], alpha=0.5, legend_label="data")
    recon.scatter("rx", "ry", source=points, size=4, color=colour, alpha=0.85, legend_label="reconstructions")
    _legend(recon)
    buttons = RadioButtonGroup(labels=[f"β = {b:g}" for b in frames.betas], active=s, name="beta")
    readout = _readout(_beta_readout(frames, s))
    callback = CustomJS(args={
        "points": points, "buttons": buttons, "readout": readout, "n": n, "betas": frames.betas,
        "means": _f32(frames.latent_means), "recs": _f32(frames.reconstructions),
        "rec_term": frames.reconstruction.tolist(), "kl": frames.kl.tolist(), "elbo": frames.elbo.tolist(),
    }, code=_JS_FMT + """
const s = buttons.active, zx = [], zy = [], rx = [], ry = [];
for (let i = 0; i < n; i++) {
  const j = 2 * (s * n + i);
  zx.push(means[j]); zy.push(means[j + 1]); rx.push(recs[j]); ry.push(recs[j + 1]);
}
points.data = Object.assign({}, points.data, {zx: zx, zy: zy, rx: rx, ry: ry});
readout.text = "<b>β = " + betas[s] + "</b>: reconstruction " + fmt(rec_term[s], 3) + ", KL " + fmt(kl[s], 3)
  + ", ELBO " + fmt(elbo[s], 3) + " (nats per point)";
""")
    buttons.js_on_change("active", callback)
    layout = column(buttons, _row(latent, recon), readout)
    return InteractiveFigure(name, layout, plot_beta_frames(frames, radii=radii), alt)


@styled
def plot_beta_frames(frames: BetaSweepFrames, *, radii: Sequence[float] = PRIOR_RADII) -> Figure:
    """Static frames of the β sweep: one column per β; top row the encoder means over the prior's
    contours (shared axes), bottom row the data (grey) and the reconstructions, both coloured by
    position along the spiral."""
    s_count = len(frames.betas)
    fig, axes = new_figure(2, s_count, width=8.8, height=3.9, squeeze=False)
    means = to_numpy(frames.latent_means)
    lim = max(1.07 * max(radii), 1.08 * float(np.abs(means).max()))
    data = to_numpy(frames.data)
    for s, beta in enumerate(frames.betas):
        ax_z, ax_x = axes[0, s], axes[1, s]
        prior_circles(ax_z, radii)
        spiral_scatter(ax_z, frames.latent_means[s], size=5, zorder=3)   # on top: a collapsed code is one dot
        ax_z.set_xlim(-lim, lim)
        ax_z.set_ylim(-lim, lim)
        ax_z.set_aspect("equal")
        ax_z.set_title(f"β = {beta:g}")
        ax_x.scatter(data[:, 0], data[:, 1], s=2, color=COLORS["muted"], alpha=0.5, linewidths=0)
        spiral_scatter(ax_x, frames.reconstructions[s], size=5, zorder=3)
        ax_x.set_aspect("equal")
        ax_x.set_xlabel("$x_1$")
        ax_z.set_xlabel("$z_1$")
        if s:
            ax_z.tick_params(labelleft=False)
            ax_x.tick_params(labelleft=False)
    axes[0, 0].set_ylabel("$z_2$")
    axes[1, 0].set_ylabel("$x_2$")
    panel_label(axes[0, 0], "(a)")
    panel_label(axes[1, 0], "(b)")
    return fig


# --- The forward diffusion process ---------------------------------------------------------------


def _forward_readout(frames: ForwardFrames, f: int) -> str:
    a = frames.alpha_bar[f].item()
    return (f"<b>t = {frames.steps[f]}</b>: ᾱ<sub>t</sub> = {_fmt(a, 4)}, signal √ᾱ<sub>t</sub> = {_fmt(math.sqrt(a))}, "
            f"noise √(1−ᾱ<sub>t</sub>) = {_fmt(math.sqrt(1 - a))}; KL(q(x<sub>t</sub> | x<sub>0</sub>) ‖ N(0, I)) = "
            f"{_fmt(frames.prior_kl[f].item())} nats")


def forward_process_explorer(frames: ForwardFrames, *, t: int = 0, name: str = "forward-process",
                             radius: float = 2.0, lim: float = 11.0, static_steps: Sequence[int] | None = None,
                             alt: str = "The spiral under the forward process at a few time steps.") -> InteractiveFigure:
    """The forward process with a slider for t.

    (a) :math:`x_t` for every data point (one noise draw shared by all t), coloured by position along
    the spiral, with the circle of radius ``radius``; (b) the signal and noise scales against t,
    with the chosen t marked. The readout gives :math:`\\bar\\alpha_t` and the data-averaged
    :math:`\\mathrm{KL}(q(x_t \\mid x_0) \\,\\|\\, \\mathcal N(0, I))`. The static image shows
    ``static_steps`` (default: four frames evenly spread over the steps).
    """
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, Slider, Span

    steps = np.asarray(frames.steps, dtype=float)
    _check_uniform("frames.steps", steps)
    if t not in frames.steps:
        raise ValueError(f"t must be one of the frames' steps, got {t}")
    f = frames.steps.index(t)
    xt = to_numpy(frames.xt)
    n = xt.shape[1]
    points = ColumnDataSource({"position": np.arange(n), "x": xt[f, :, 0], "y": xt[f, :, 1]}, name="points")
    scatter = _panel("x₁", "x₂", x_range=(-lim, lim), y_range=(-lim, lim), match_aspect=True)
    scatter.circle(x=0, y=0, radius=radius, fill_color=None, line_color=COLORS["q"], line_dash="dashed", line_width=1.5)
    scatter.scatter("x", "y", source=points, size=4, color=_viridis_mapper(n), alpha=0.8)
    a = to_numpy(frames.alpha_bar)
    sched = _panel("step t", "scale")
    sched.line(steps, np.sqrt(a), color=COLORS["p"], line_width=2, legend_label="signal √ᾱₜ")
    sched.line(steps, np.sqrt(1 - a), color=COLORS["q"], line_width=2, legend_label="noise √(1−ᾱₜ)")
    marker = Span(location=float(t), dimension="height", line_color=COLORS["data"], line_dash="dotted", line_width=1.5,
                  name="t-marker")
    sched.add_layout(marker)
    _legend(sched)
    slider = Slider(start=steps[0], end=steps[-1], step=_step(steps), value=float(t), title="time step t", name="t",
                    width=SLIDER_WIDTH)
    readout = _readout(_forward_readout(frames, f))
    callback = CustomJS(args={
        "points": points, "slider": slider, "readout": readout, "marker": marker, "n": n, "xt": _f32(frames.xt),
        "alpha_bar": frames.alpha_bar.tolist(), "kl": [v if math.isfinite(v) else None for v in frames.prior_kl.tolist()],
    }, code=_JS_FMT + """
const f = Math.round((slider.value - slider.start) / slider.step), x = [], y = [];
for (let i = 0; i < n; i++) { const j = 2 * (f * n + i); x.push(xt[j]); y.push(xt[j + 1]); }
points.data = Object.assign({}, points.data, {x: x, y: y});
marker.location = slider.value;
const a = alpha_bar[f], k = kl[f] === null ? Infinity : kl[f];
readout.text = "<b>t = " + slider.value + "</b>: ᾱ<sub>t</sub> = " + fmt(a, 4) + ", signal √ᾱ<sub>t</sub> = " + fmt(Math.sqrt(a), 3)
  + ", noise √(1−ᾱ<sub>t</sub>) = " + fmt(Math.sqrt(1 - a), 3) + "; KL(q(x<sub>t</sub> | x<sub>0</sub>) ‖ N(0, I)) = "
  + fmt(k, 3) + " nats";
""")
    slider.js_on_change("value", callback)
    layout = column(slider, _row(scatter, sched), readout)
    chosen = list(static_steps) if static_steps is not None else [frames.steps[i] for i in
                                                                    np.linspace(0, len(steps) - 1, 4).round().astype(int)]
    return InteractiveFigure(name, layout, plot_forward_frames(frames, chosen, radius=radius, lim=lim), alt)


@styled
def plot_forward_frames(frames: ForwardFrames, steps: Sequence[int], *, radius: float = 2.0, lim: float = 11.0) -> Figure:
    """Static frames of the forward process: one panel per step in ``steps`` (each one of the frames' steps)."""
    missing = [t for t in steps if t not in frames.steps]
    if not steps or missing:
        raise ValueError(f"steps must be a non-empty subset of the frames' steps, got {list(steps)}")
    fig, axes = new_figure(1, len(steps), width=8.8, height=2.6, squeeze=False, sharex=True, sharey=True)
    circle = np.linspace(0, 2 * np.pi, 200)
    for ax, t in zip(axes[0], steps, strict=True):
        f = frames.steps.index(t)
        spiral_scatter(ax, frames.xt[f], size=4, alpha=0.8)
        ax.plot(radius * np.cos(circle), radius * np.sin(circle), color=COLORS["q"], lw=1.0, ls="--")
        ax.set_title(f"$t = {t}$, $\\bar\\alpha_t = {_latex_number(frames.alpha_bar[f].item())}$")
        ax.set_aspect("equal")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel("$x_1$")
    axes[0, 0].set_ylabel("$x_2$")
    return fig


# --- ELBO, IWAE bound and log p(x) against K -----------------------------------------------------


def _iwae_readout(frames: IWAEFrames, labels: Sequence[str], i: int, s: int) -> str:
    bound, se = frames.bound[i, s].item(), frames.stderr[i, s].item()
    se_text = f" ± {_fmt(2 * se, 4)}" if math.isfinite(se) else ""
    return (f"<b>{labels[i]} point, K = {frames.sizes[s]}</b> ({int(frames.repeats[s])} runs): "
            f"IWAE bound ≈ {_fmt(bound, 4)}{se_text}; exact log p(x) = {_fmt(frames.log_evidence[i].item(), 4)}, "
            f"exact ELBO = {_fmt(frames.elbo[i].item(), 4)}; log p(x) − bound = "
            f"{_fmt(frames.log_evidence[i].item() - bound, 4)} nats")


def iwae_explorer(frames: IWAEFrames, labels: Sequence[str], *, point: int = 0, k: int | None = None,
                  name: str = "iwae-bound",
                  alt: str = "The IWAE bound against K between the ELBO and log p(x).") -> InteractiveFigure:
    """ELBO, IWAE bound and exact :math:`\\log p(x)` against K: buttons choose the point, a slider K.

    (a) the estimated bound :math:`\\mathcal L^{\\mathrm{IW}}_K` against K (log axis) with a band of two
    standard errors, the exact ELBO (dotted) and :math:`\\log p(x)` (dashed), the chosen K marked;
    (b) the histogram of the runs' estimates :math:`\\log \\hat p_K` at the chosen K, with the ELBO,
    the bound and :math:`\\log p(x)` as vertical lines. The static image shows (a) for every point.
    """
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, CustomJSTickFormatter, RadioButtonGroup, Range1d, Slider, Span

    if len(labels) != frames.bound.shape[0]:
        raise ValueError(f"labels must name the {frames.bound.shape[0]} points, got {len(labels)}")
    if not 0 <= point < len(labels):
        raise ValueError(f"point must index labels, got {point}")
    if k is not None and k not in frames.sizes:
        raise ValueError(f"k must be one of the frames' sizes, got {k}")
    s = frames.sizes.index(k) if k is not None else 0
    sizes = np.asarray(frames.sizes, dtype=float)
    bound, stderr = to_numpy(frames.bound), np.nan_to_num(to_numpy(frames.stderr), nan=0.0)
    log_p, elbo = to_numpy(frames.log_evidence), to_numpy(frames.elbo)
    edges, density = to_numpy(frames.edges), to_numpy(frames.density)

    def curve(i: int) -> dict:
        return {"k": sizes, "bound": bound[i], "low": bound[i] - 2 * stderr[i], "high": bound[i] + 2 * stderr[i],
                "log_p": np.full_like(sizes, log_p[i]), "elbo": np.full_like(sizes, elbo[i])}

    def bars(i: int, j: int) -> dict:
        return {"left": edges[i, j, :-1], "right": edges[i, j, 1:], "top": density[i, j]}

    line = ColumnDataSource(curve(point), name="curve")
    chosen = ColumnDataSource({"k": [sizes[s]], "bound": [bound[point, s]]}, name="chosen")
    hist = ColumnDataSource(bars(point, s), name="histogram")
    colour = POINT_COLORS[point % len(POINT_COLORS)]
    against_k = _panel("number of samples K", "nats", x_axis_type="log")
    against_k.varea("k", "low", "high", source=line, fill_color=COLORS["p"], fill_alpha=0.2)
    against_k.line("k", "bound", source=line, color=COLORS["p"], line_width=2, legend_label="IWAE bound (± 2 s.e.)")
    against_k.scatter("k", "bound", source=line, color=COLORS["p"], size=5)
    against_k.line("k", "log_p", source=line, color=COLORS["exact"], line_width=2, line_dash="dashed",
                   legend_label="exact log p(x)")
    against_k.line("k", "elbo", source=line, color=COLORS["kl"], line_width=2, line_dash="dotted",
                   legend_label="exact ELBO")
    against_k.scatter("k", "bound", source=chosen, color=colour, size=12, marker="diamond", line_color="white")
    _legend(against_k)
    x_range = Range1d(float(edges[point, s, 0]), float(edges[point, s, -1]))
    spread = _panel("estimate log p̂(x) of each run", "density", x_range=x_range)
    spread.quad(left="left", right="right", top="top", bottom=0, source=hist, fill_color=colour, fill_alpha=0.5,
                line_color=colour)
    spans = {key: Span(location=float(value), dimension="height", line_color=c, line_dash=d, line_width=2, name=key)
             for key, value, c, d in (("span-elbo", elbo[point], COLORS["kl"], "dotted"),
                                      ("span-bound", bound[point, s], COLORS["p"], "solid"),
                                      ("span-log-p", log_p[point], COLORS["exact"], "dashed"))}
    for span in spans.values():
        spread.add_layout(span)
    buttons = RadioButtonGroup(labels=[f"{label} point" for label in labels], active=point, name="point")
    slider = Slider(start=0, end=len(sizes) - 1, step=1, value=s, title="number of samples K", name="k", width=SLIDER_WIDTH,
                    format=CustomJSTickFormatter(args={"sizes": frames.sizes}, code="return String(sizes[Math.round(tick)]);"))
    readout = _readout(_iwae_readout(frames, labels, point, s))
    callback = CustomJS(args={
        "line": line, "chosen": chosen, "hist": hist, "buttons": buttons, "slider": slider, "readout": readout,
        "x_range": x_range, "spans": list(spans.values()), "colours": [POINT_COLORS[i % len(POINT_COLORS)] for i in range(len(labels))],
        "labels": list(labels), "sizes": frames.sizes, "repeats": frames.repeats.tolist(),
        "bound": bound.tolist(), "stderr": stderr.tolist(), "log_p": log_p.tolist(), "elbo": elbo.tolist(),
        "edges": edges.tolist(), "density": _f32(frames.density), "n_sizes": len(sizes), "n_bins": density.shape[2],
    }, code=_JS_FMT + """
const i = buttons.active, s = Math.round(slider.value), b = bound[i], se = stderr[i];
line.data = {k: sizes.slice(), bound: b.slice(), low: b.map((v, j) => v - 2 * se[j]), high: b.map((v, j) => v + 2 * se[j]),
             log_p: sizes.map(() => log_p[i]), elbo: sizes.map(() => elbo[i])};
chosen.data = {k: [sizes[s]], bound: [b[s]]};
const e = edges[i][s], lo = (i * n_sizes + s) * n_bins;
hist.data = {left: e.slice(0, -1), right: e.slice(1), top: Array.from(density.slice(lo, lo + n_bins))};
x_range.start = e[0]; x_range.end = e[e.length - 1];
spans[0].location = elbo[i]; spans[1].location = b[s]; spans[2].location = log_p[i];
const se_text = repeats[s] > 1 ? " ± " + fmt(2 * se[s], 4) : "";
readout.text = "<b>" + labels[i] + " point, K = " + sizes[s] + "</b> (" + repeats[s] + " runs): IWAE bound ≈ " + fmt(b[s], 4)
  + se_text + "; exact log p(x) = " + fmt(log_p[i], 4) + ", exact ELBO = " + fmt(elbo[i], 4)
  + "; log p(x) − bound = " + fmt(log_p[i] - b[s], 4) + " nats";
""")
    buttons.js_on_change("active", callback)
    slider.js_on_change("value", callback)
    layout = column(_row(buttons, slider), _row(against_k, spread), readout)
    return InteractiveFigure(name, layout, plot_iwae_frames(frames, labels), alt)


@styled
def plot_iwae_frames(frames: IWAEFrames, labels: Sequence[str]) -> Figure:
    """Static view of the IWAE explorer: one panel per point, the estimated bound against K (log axis)
    with two standard errors, the exact ELBO (dotted) and the exact :math:`\\log p(x)` (dashed)."""
    if len(labels) != frames.bound.shape[0]:
        raise ValueError(f"labels must name the {frames.bound.shape[0]} points, got {len(labels)}")
    sizes = np.asarray(frames.sizes, dtype=float)
    fig, axes = new_figure(1, len(labels), width=8.8, height=2.9, squeeze=False)
    for i, (ax, label) in enumerate(zip(axes[0], labels, strict=True)):
        bound, se = to_numpy(frames.bound[i]), np.nan_to_num(to_numpy(frames.stderr[i]), nan=0.0)
        ax.fill_between(sizes, bound - 2 * se, bound + 2 * se, color=COLORS["p"], alpha=0.2, lw=0)
        ax.plot(sizes, bound, "o-", color=COLORS["p"], ms=3, label=r"IWAE bound $\mathcal{L}^{\mathrm{IW}}_K$")
        ax.axhline(frames.log_evidence[i].item(), color=COLORS["exact"], ls="--", lw=1.4, label=r"exact $\log p(x)$")
        ax.axhline(frames.elbo[i].item(), color=COLORS["kl"], ls=":", lw=1.6, label="exact ELBO")
        ax.set_xscale("log")
        ax.set_xlabel("number of samples $K$")
        ax.set_title(f"{label} point")
    axes[0, 0].set_ylabel("nats")
    axes[0, -1].legend(loc="lower right", fontsize=8)
    return fig
