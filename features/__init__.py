"""Table contract and point-in-time feature and label definitions. Imports nothing else of ours."""
