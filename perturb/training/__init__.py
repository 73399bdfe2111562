"""PyTorch training of the shipped protection model (Python 3.11, CPU); see docs/model.md."""
