"""Data: dataset records (``datasets/``), the view dataset and the Lightning DataModules."""
