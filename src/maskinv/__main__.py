"""``python -m maskinv`` (used by ``torchrun -m maskinv train CFG``)."""
from maskinv.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
