"""Data: clips of a DCASE dataset, their log-mel features and cache, the scaling, the segments."""
