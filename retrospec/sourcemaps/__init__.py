"""Source maps: parse and check them, pair them with bundles, store them per release, fetch them."""
