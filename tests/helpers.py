from deepinv_energy.exactness import random_mixture  # noqa: F401  (the tests' shared mixture)
