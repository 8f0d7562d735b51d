"""Training: the run's settings (``config``), the loop (``loop``), checkpoints, the training data
loader, the loss (``losses``) and ImageNet backbone initialisation (``pretrained``)."""
