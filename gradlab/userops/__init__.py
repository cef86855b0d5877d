"""Users' own ops -- `file.py:Name` or `package.module:Name` -- beside gradlab's op registry.

  loading    TARGET -> a fresh object (imports guarded; the no-code switch; dotted names from installed packages only)
  contracts  what an activation, loss, layer or torch.autograd.Function must provide
  adapters   a user's op wrapped into the registry's records, every call and return checked

Specs and networks use them through `adapters`; `gradlab audit` consumes the same loading and contracts.
"""
