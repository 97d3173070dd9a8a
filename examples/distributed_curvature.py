"""
Curvature across processes with torch.distributed
=================================================

The top Hessian eigenvalue and the trace of the expected dropout loss over 4 fixed masks, with
the rows of the data split over the ranks of a process group.

Run:  torchrun --nproc-per-node 2 examples/distributed_curvature.py   (gloo on CPU, NCCL on GPUs)
      python examples/distributed_curvature.py                         (one process)

Every rank builds the same model and data from one seed and keeps its share of the rows (the
shares may be uneven). `DropoutRisk(..., process_group=)` weights every piece by the global row
count and sums loss, gradient and each Hessian-vector product over the ranks by one all-reduce,
so Lanczos and Hutch++ run unchanged on every rank and print the same numbers on every rank.
The dropout masks are drawn per block of rows from the seed, so one process and any number of
ranks compute the same operator (the printed numbers agree up to rounding). The probes come from
generators with the same seed on every rank. DDP is not used: it has no double backward.
"""

import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from dropreg.curvature import DropoutRisk, HessianOperator, stochastic_trace, top_eigenpairs

launched = "RANK" in os.environ  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
if launched:
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world, group = dist.get_rank(), dist.get_world_size(), dist.group.WORLD
    device = torch.device("cuda", rank % torch.cuda.device_count()) \
        if torch.cuda.is_available() else torch.device("cpu")
else:
    rank, world, group, device = 0, 1, None, torch.device("cpu")

# %%
# The same model and data on every rank (from one seed); each rank keeps its rows.
g = torch.Generator().manual_seed(0)
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10)).double()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / p.shape[-1] ** 0.5)
X = torch.randn(1000, 20, generator=g, dtype=torch.float64)
y = torch.randint(0, 10, (1000,), generator=g)
rows = torch.arange(len(y)).tensor_split(world)[rank]
model = model.to(device)

# %%
# The risk over this rank's shard, its Hessian, and the two estimators.
risk = DropoutRisk(model, nn.functional.cross_entropy, (X[rows].to(device), y[rows].to(device)),
                   dropout="expected", num_masks=4, batch_size=250,
                   generator=torch.Generator().manual_seed(1), process_group=group)
H = HessianOperator(risk)
top = top_eigenpairs(H, k=1, tol=1e-6, generator=torch.Generator(device).manual_seed(2))
tr = stochastic_trace(H, 30, "hutch++", generator=torch.Generator(device).manual_seed(3))
line = (f"rank {rank} of {world}: {len(rows)} rows; top eigenvalue "
        f"{float(top.eigenvalues[0]):.8f} ({top.iterations} products), trace {tr.estimate:.6f} "
        f"+- {tr.stderr:.2g} (Hutch++)")
sys.stdout.write(line + "\n")  # one write: the ranks share stdout under torchrun
sys.stdout.flush()

if launched:
    dist.barrier()  # no rank tears the group down while a peer still talks to it (gloo aborts)
    dist.destroy_process_group()
