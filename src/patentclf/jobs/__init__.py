"""Jobs over many files: the Ray job runner, bulk prediction, building a patent index."""
