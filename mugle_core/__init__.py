"""Shared by training and the service: artifact layout, catalog, title normaliser, mel front end and files,
search-index format, pictures. Needs numpy only; imports neither `app` nor `training` nor torch/gensim."""
