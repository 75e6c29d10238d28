"""Networks and augmentation shared by the objectives and the evaluation protocol.

:data:`MODELS` names the networks :func:`quadd_train.nn.models.build_model` builds; it is
here, torch-free, so the command line can offer them without importing torch.
"""

#: Every model name build_model takes: the ConvNet and MLP, and the reference networks
#: of cross-architecture evaluation.
MODELS: tuple[str, ...] = ("convnet", "mlp", "alexnet", "vgg11", "resnet18")
