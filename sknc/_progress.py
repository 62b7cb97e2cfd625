"""skorch callbacks that print training progress for the ``sknc`` command line."""

from __future__ import annotations

import sys

from skorch.callbacks import Callback

_TABLE_KEYS = ("nc1", "nc2_h", "nc2_w", "nc3", "nc4", "tagwise_angle")


class Progress(Callback):
    """One updating line on a terminal, a line every few epochs otherwise."""

    def __init__(self, total, stream=None):
        self.total = total
        self.stream = stream

    def on_epoch_end(self, net, **kwargs):
        stream = self.stream or sys.stdout
        row = net.history[-1]
        epoch = row["epoch"]
        # the rate recorded for this epoch, or (a recorder that runs later) the one the optimizer holds now
        lr = row.get("lr", net.optimizer_.param_groups[0]["lr"])
        text = f"epoch {epoch:4d}/{self.total}  loss {row['train_loss']:.4f}  lr {lr:.4g}"
        if "nc1" in row:
            text += f"  nc1 {row['nc1']:.3g}"
        if stream.isatty():
            stream.write("\r" + text.ljust(72))
            if epoch == self.total:
                stream.write("\n")
        elif epoch % max(1, self.total // 20) == 0 or epoch == self.total or epoch == 1:
            stream.write(text + "\n")
        stream.flush()


class CheckpointTable(Callback):
    """Print the NC values whenever the tracker recorded a row."""

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        if "nc1" not in row:
            return
        if sys.stdout.isatty():
            sys.stdout.write("\n")
        cells = "  ".join(f"{k} {row[k]:.4g}" for k in _TABLE_KEYS if k in row)
        print(f"  [NC checkpoint, epoch {row['epoch']}] {cells}")
