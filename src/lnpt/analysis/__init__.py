"""Analysis of runs: learning gap, weight distance, correlations, figures and reports."""
