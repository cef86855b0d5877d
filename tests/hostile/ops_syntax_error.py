"""Does not parse."""

class Act:
    def forward(self, z)
        return z
