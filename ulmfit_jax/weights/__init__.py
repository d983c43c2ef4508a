"""Weights in and out: fastai `.pth` files and this project's exports."""
