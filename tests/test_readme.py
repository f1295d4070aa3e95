"""README's Python quickstart runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs():
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["mean"].shape == (4, 1, 28, 28)
    assert (namespace["std"] >= 0).all()


def test_natural_photo_snippet_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(b for b in blocks if "natural-gray" in b)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["x_hat"].shape == (1, 1, 256, 256)
