"""Worker for tests/test_training.py::test_torchrun_two_processes_on_cpu_end_identical.

Run as ``python -m torch.distributed.run --standalone --nproc_per_node=2 ddp_train_script.py OUT``:
each rank trains the same tiny network with the genlab Trainer (gloo on CPU) and writes its
final weights to OUT/rank<r>.safetensors; rank 0 also writes OUT/rank0.json.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from genlab.likelihood import dequantize
from genlab.training import Trainer, TrainingConfig


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 4, 64)
        )

    def forward(self, batch):
        x = dequantize(batch["images"])
        loss = ((torch.sigmoid(self.body(x)) - x.flatten(1)) ** 2).mean()
        return loss, {"mse": loss.detach()}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (72, 1, 8, 8), generator=g, dtype=torch.int64).to(torch.uint8)
    torch.manual_seed(0)
    net = Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = TrainingConfig(
        epochs=2,
        batch_size=16,
        lr=1e-2,
        warmup_steps=2,
        val_fraction=0.1,
        ema_decay=0.9,
        checkpoint_dir=str(out / "ckpt"),
        checkpoint_every=3,
        log_every=2,
        device="cpu",  # gloo on the CPU: under "auto" a GPU machine would put both ranks on CUDA
    )
    trainer = Trainer(cfg)
    result = trainer.fit(net, {"images": images})
    rank = int(__import__("os").environ["RANK"])
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    if rank == 0:
        changed = any(not torch.equal(before[k], v) for k, v in net.state_dict().items())
        summary = {"world_size": trainer.dist.world_size, "steps": result.steps, "changed": changed}
        (out / "rank0.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
