"""A toy polynomial regression trained by gradient descent: the expyrun example project."""
