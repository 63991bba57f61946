"""Pure tensor functions of the data path: preprocess (resize / normalise / pad, shared by training and inference)
and postprocess (top-k over queries x classes, mask up-sampling)."""
