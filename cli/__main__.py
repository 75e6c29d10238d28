"""``python -m quadd_cli``: the `quadd` command, so ``torchrun ... -m quadd_cli distill ...``
launches it on every rank (see docs/scaling.md)."""

from .main import main

if __name__ == "__main__":
    main(prog_name="quadd")
