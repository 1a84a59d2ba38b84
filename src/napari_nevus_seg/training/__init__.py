"""Training pairs, losses, the training loop, augmentation, fine-tuning on corrections, the training set."""
