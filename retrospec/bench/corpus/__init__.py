"""The grouping corpus (`retrospec bench grouping`): real apps, real bundlers, real bugs."""
