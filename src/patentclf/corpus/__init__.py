"""Data and codes: the nine sections, the CPC hierarchy and its titles, input files, data splits."""
