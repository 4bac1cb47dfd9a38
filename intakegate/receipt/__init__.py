"""The exact receipt and its gate: fixtures, composed tickets, golden rows, the threshold rule
and slice evaluation."""
