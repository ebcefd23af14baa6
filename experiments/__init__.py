"""Experiment grids: the paper's Tables 1–4 as data, a runner and a tabulator.

``python -m experiments.grid {list,run,table}``; see :mod:`experiments.grid`.
"""
