"""labcode: the mathematics of "Mathematical Foundations of Generative Models".

Every chapter of the book calls into this package; ``import labcode as lc``.
The package is organised by mathematical concept, one module each (``gaussian``,
``kl``, ``jensen``, ``likelihood``, ``importance``, ``lattice``, ``quadrature``,
``exact``, ``fits``, ``elbo``, ``vae``, ``gradients``, ``diffusion``); figures are in
``plots``, the strings chapters glue in ``prose``, the student lab in ``lab``.
"""

from .data import device_name, get_device, make_spiral, spiral_curve
from .elbo import kl_regularization, reconstruction_loss, reparameterize
from .experiments import BETA_SWEEP, LAB_SPIRAL, REFERENCE_TRAINING, SpiralSpec, beta_sweep, lab_data, reference_vae
from .gaussian import gaussian_log_density
from .importance import effective_sample_size
from .jensen import jensen_gap
from .kl import gaussian_kl_closed_form, monte_carlo_kl, standard_normal_kl
from .likelihood import (
    approximate_marginal_likelihood,
    likelihood_given_z,
    log_likelihood_given_z,
    log_likelihood_matrix,
    log_marginal_likelihood_mc,
    sample_prior,
)
from .vae import VAE, VAEConfig, analyze_beta_vae, evaluate_vae, fit_vae, train_vae

__all__ = [
    "BETA_SWEEP",
    "LAB_SPIRAL",
    "REFERENCE_TRAINING",
    "VAE",
    "SpiralSpec",
    "VAEConfig",
    "analyze_beta_vae",
    "approximate_marginal_likelihood",
    "beta_sweep",
    "device_name",
    "effective_sample_size",
    "evaluate_vae",
    "fit_vae",
    "gaussian_kl_closed_form",
    "gaussian_log_density",
    "get_device",
    "jensen_gap",
    "kl_regularization",
    "lab_data",
    "likelihood_given_z",
    "log_likelihood_given_z",
    "log_likelihood_matrix",
    "log_marginal_likelihood_mc",
    "make_spiral",
    "monte_carlo_kl",
    "reconstruction_loss",
    "reference_vae",
    "reparameterize",
    "sample_prior",
    "spiral_curve",
    "standard_normal_kl",
    "train_vae",
]
__version__ = "0.1.0"
