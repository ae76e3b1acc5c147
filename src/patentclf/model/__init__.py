"""The model as an artefact: base models, the heads, the bundle on disk, its TF-IDF partner, settings, token windows."""
