"""
Blind estimation of a blur width from the evidence
==================================================

A normalized energy gives the evidence :math:`\\log p(y \\mid \\theta)` of a measurement under
every candidate operator, so Bayes' rule gives a posterior over the operator
(:class:`deepinv_energy.BlindEstimator`). Here the width of a Gaussian blur is unknown.
"""

import matplotlib.pyplot as plt
import torch

from deepinv_energy import BlindEstimator, EnergyUNet, GaussianBlurFamily
from deepinv_energy.demo import bundled_test_images

model = EnergyUNet.from_pretrained("fashion-mnist-28")
x, _ = bundled_test_images(3)
family = GaussianBlurFamily((1, 28, 28), widths=torch.linspace(0.4, 2.5, 15), noise=0.02)

true_width = torch.tensor([0.8, 1.2, 1.8], dtype=torch.float64)
y = family.measure(x, {"width": true_width, "noise": torch.full((3,), 0.02)}, generator=torch.Generator().manual_seed(0))

post = BlindEstimator(model, family, batch_size=45).posterior(y)
values, log_marginal = post.marginal("width")
lo, hi = post.credible_interval("width", 0.9)

fig, ax = plt.subplots(figsize=(6, 3))
for i in range(3):
    ax.plot(values, log_marginal[i].exp(), "o-", label=f"true width {true_width[i]:.1f}")
    ax.axvline(true_width[i], color=f"C{i}", ls=":")
ax.set_xlabel("blur width (pixels)")
ax.set_ylabel("posterior probability")
ax.legend(fontsize=8)
fig.tight_layout()

for i in range(3):
    print(f"true {true_width[i]:.2f}  MAP {post.map()['width'][i]:.2f}  90% interval [{lo[i]:.2f}, {hi[i]:.2f}]")
