"""Small shared utilities: atomic writes, safe unpickling, colour maps and visualisations, moving
tensors to a device. (The results-file format lives in :mod:`seqrank.evaluation.results_file`.)"""
