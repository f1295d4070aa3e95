"""``python -m deepinv_energy.training``: same as ``deepinv-energy train``."""

import sys

from .trainer import main_train

sys.exit(main_train())
