"""`retrospec bench`: load generator, bare baseline and the sub-benchmarks behind §7's figures."""
