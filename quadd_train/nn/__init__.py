"""Networks and augmentation shared by the objectives and the evaluation protocol."""
