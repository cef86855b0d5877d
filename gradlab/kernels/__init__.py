"""`gradlab compare`: a fast kernel (candidate) against a reference, in a low dtype, by the FlashAttention rule.

Layout: targets.py loads and calls the candidate and the reference; inputs.py turns declared shapes into
drawn cases; execute.py runs one case three ways; secondorder.py and forwardad.py add Hessian-vector
products and JVPs; cases.py judges one case whole; rule.py is the verdict on one tensor; search.py runs
Hypothesis and shrinks a failure; determinism.py re-runs backward; modules.py audits an nn.Module;
report.py renders. Not to be confused with gradlab/compare.py, which
turns Gradients into Comparison rows for `gradlab check`.
"""

from .rule import RuleCheck, judge  # noqa: F401

__all__ = ["RuleCheck", "judge"]
