"""An nn.Module whose example_inputs() declares a trillion elements: `gradlab audit --kind module` refuses it up front."""

import torch


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x)


def example_inputs():
    return {"x": (1000000, 1000000)}
