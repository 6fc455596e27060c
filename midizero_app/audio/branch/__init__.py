"""The audio branch of the two-branch audio/symbolic embedding (Dorfer, Arzt & Widmer):
its input spectrogram and the rendered training data it learns from."""
