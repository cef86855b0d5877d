"""nn.Modules for `gradlab compare` whose own methods misbehave where gradlab calls them (tests/test_user_objects.py)."""

import torch


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x)


class StateDictRaises(Linear):
    def state_dict(self, *args, **kwargs):
        raise RuntimeError("no state for you")


def example_inputs():
    return {"x": (4, 3)}
