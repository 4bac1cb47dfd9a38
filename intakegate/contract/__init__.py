"""The label contract and the data it governs: label guide, dataset, split, data card."""
