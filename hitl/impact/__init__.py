"""Fair pay and social impact: the ledger of what every answer earns, and the project's ScoreCard.

- :class:`WageTable`: local minimum wages, each with its source and date.
- :class:`Ledger`: pay per answer (piece rate from the median time on task x local minimum
  wage x a fair-pay multiple), client price, the 60/35/5 split, top-ups to a floor.
- :class:`ScoreCard`: what a project did for the people who labeled it, as JSON,
  Markdown and a self-contained HTML page.

Amounts are integer micros (1e-6) of one settlement currency; see :mod:`hitl.impact.ledger`.
"""

from ._money import MICROS, PARTIES, Split, format_money
from .ledger import Ledger
from .scorecard import ScoreCard
from .wages import Wage, WageTable

__all__ = ["Ledger", "MICROS", "PARTIES", "ScoreCard", "Split", "Wage", "WageTable", "format_money"]
