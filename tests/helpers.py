from deepinv_energy.testing import random_mixture  # noqa: F401  (the tests' shared mixture)
