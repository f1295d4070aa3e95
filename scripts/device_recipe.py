#!/usr/bin/env python3
"""One call on a lent device machine: install the carried wheels, then run the training recipe
(:mod:`deepinv_energy.training.recipe`: probe, cosine schedule sized to --budget, train, export the
normalized EMA weights, pack at most 8 files of at most 16 MiB into $OUT).

The device machine has no internet. Prepare here once per session (both folders are ignored, via
``.git/info/exclude``, and carried explicitly)::

    echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: -d .whl deepinv==0.5.0 natsort
    mkdir -p .data && cp /usr/share/datasets/fashion-mnist/*.gz .data/

then call the device tool, e.g. (a warm start of the bundled run's checkpoint, restored from git
history as training_state/README.md says, or a fresh model without --init-from)::

    run(command="python3 scripts/device_recipe.py --budget 500 --data .data --device cuda \
        --width 96 --batch-size 512 --lr 5e-4 --loss-weight edm --input-scale wiener \
        --p-unobserved 0.9 --ckpt-every 5000 --log-every 100 --out /tmp/run",
        carry=[".whl", ".data"], timeout_s=590)

and reassemble the returned files here: ``cat recipe.tar.part* > recipe.tar && tar xf recipe.tar``
(``summary.json`` has the sha256 of recipe.tar and the measured numbers). The budget must leave
room in timeout_s for the wheel installation and the start of Python (~20 s).
"""

import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

if __name__ == "__main__":
    wheels = sorted(glob.glob(os.path.join(ROOT, ".whl", "*.whl")))
    if wheels:  # deepinv and natsort (torch is on the machine); no index, no internet
        site = "/tmp/site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--target", site, *wheels], check=True)
        sys.path.insert(0, site)
    sys.path.insert(0, ROOT)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from deepinv_energy.training.recipe import main

    sys.exit(main())
