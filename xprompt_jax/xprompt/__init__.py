"""XPrompt (Ma et al., EMNLP 2022): importance scores, hierarchical pruning, rewinding, and the 3-stage run."""
