"""
Closed-form DropBlock minimizer of a linear net
===============================================

The closed-form global minimizer of DropBlock on a linear regression problem (Pal et al. 2020;
see :doc:`/papers/pal2020`).

Run: python examples/closed_form_dropblock.py   (a few seconds)

For a one-hidden-layer linear net x -> U V^T x trained with DropBlock (blocks of k hidden units
dropped together, drop rate p) and squared loss on whitened inputs, the expected objective is
||M - U V^T||_F^2 + lam * sum_g ||U_g V_g^T||_F^2 with M = Y^T X / N. Its global minimum has a
closed form: the prox of the squared spectral k-support norm applied to M. This script computes
it, checks the certificate, and compares with a plain least-squares fit.
"""

# %%
# The data: a rank-3 linear map plus noise, 100 training examples of 40 inputs.

import matplotlib.pyplot as plt
import torch

from dropreg.data import synthetic_regression
from dropreg.linear import (
    DropBlockRegressor,
    block_norms,
    cross_covariance,
    numerical_rank,
    solve_dropblock,
    whiten,
)

g = torch.Generator().manual_seed(0)
data = synthetic_regression(100, 1000, d_in=40, d_out=30, rank=3, noise=1.0, generator=g)

# %%
# 1. The closed form on the cross-covariance of whitened data.
white = whiten(data.X_train)
M = cross_covariance(white.X, data.y_train)
solution = solve_dropblock(M, width=128, p=0.5, block_size=4)
print("singular values of M          ", torch.linalg.svdvals(M)[:8].numpy().round(3))
print("singular values of the optimum", solution.singular_values[:8].numpy().round(3))
print("rank of the optimum:", numerical_rank(solution.map))
print("certificate:", solution.certificate)
norms = block_norms(solution.U, solution.V, 4)
print(f"{len(norms)} block norms ||U_g V_g^T||_F, equal at the optimum: "
      f"min {norms.min():.6f}, max {norms.max():.6f}")

# %%
# 2. The spectrum: DropBlock shrinks the top singular values and drops the small ones.

s_M = torch.linalg.svdvals(M)[:12]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(range(1, 13), s_M, "o-", label="singular values of M (data)")
ax.plot(range(1, 13), solution.singular_values[:12], "s-", label="closed-form optimum")
ax.set_xlabel("index i")
ax.set_ylabel("singular value")
ax.set_ylim(bottom=0)
ax.legend()
fig.tight_layout()
if plt.get_backend().lower() != "agg":
    plt.show()

# %%
# 3. The same as a scikit-learn style estimator, against least squares on held-out data.
model = DropBlockRegressor(width=128, p=0.5, block_size=4).fit(data.X_train, data.y_train)
least_squares = torch.linalg.lstsq(data.X_train, data.y_train).solution
ls_mse = ((data.X_test @ least_squares - data.y_test) ** 2).mean()
db_mse = ((torch.from_numpy(model.predict(data.X_test)) - data.y_test) ** 2).mean()  # numpy out
print(f"test MSE: DropBlock closed form {db_mse:.4f}, least squares {ls_mse:.4f}")
