"""NC of a model trained with DistributedDataParallel, measured on every rank's shard and summed.

Run on two CPU processes (gloo); on GPUs use the "nccl" backend and move the model to each rank's device:

    torchrun --nproc_per_node=2 docs/recipes/ddp_nc.py

Every rank prints nothing but rank 0, which prints the report of all 2001 samples: the sampler pads the
shards to 1001 rows each, and the repeated sample is read once.
"""

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import sknc


def main():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    generator = torch.Generator().manual_seed(0)  # the same data on every rank; the sampler splits it
    means = 3 * torch.randn(5, 20, generator=generator)
    y = torch.randint(0, 5, (2001,), generator=generator)
    X = means[y] + torch.randn(2001, 20, generator=generator)
    dataset = TensorDataset(X, y)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    sampler = DistributedSampler(dataset, shuffle=True, seed=0)
    for epoch in range(5):  # a few epochs of DDP training
        sampler.set_epoch(epoch)
        for xb, yb in DataLoader(dataset, batch_size=128, sampler=sampler):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(ddp(xb), yb).backward()
            optimizer.step()

    # measure: each rank streams its shard through the hooks; the statistics are summed over the ranks
    loader = DataLoader(dataset, batch_size=256, sampler=DistributedSampler(dataset, shuffle=False))
    report = sknc.model_nc_report(model, loader, layers=["1", "2:input"], distributed=True)
    if rank == 0:
        print(report[["n_samples", "nc1", "nc2_h", "nc4"]].to_string())
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
