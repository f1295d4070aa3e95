"""Sphinx configuration of the deepinv-energy documentation.

Build (offline, the gallery examples run on CPU in a few minutes)::

    OMP_NUM_THREADS=1 python -m sphinx -W -q -b html docs docs/_build/html

What this file generates before the build (under ``docs/generated/``, git-ignored):

* ``cli/*.txt``: the ``--help`` text of every ``deepinv-energy`` command, from the real parser
  (the CLI reference page includes them);
* ``quickstart.py``: the Python quickstart of ``README.md`` (tested by ``tests/test_readme.py``),
  shown on the front page, so that the two can never differ;
* ``inventories/*.inv``: small offline intersphinx inventories of deepinv (every public class of
  its main subpackages, built from the installed deepinv) and of the torch names our signatures
  use, so that links to deepinv and torch work without a network. With
  ``DEEPINV_ENERGY_DOCS_ONLINE=1`` the real inventories are downloaded instead (and Python's and
  NumPy's are added).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import os
import pathlib
import re
import sys
import zlib

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "generated"
sys.path.insert(0, str(ROOT))
import deepinv_energy  # noqa: E402

project = "deepinv-energy"
author = "deepinv-energy developers"
copyright = "2026, deepinv-energy developers"
release = version = deepinv_energy.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

# ---------------------------------------------------------------------------------------- autodoc
autosummary_generate = True
autosummary_imported_members = False
templates_path = ["_templates"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True  # show defaults as written (a lambda, not its repr)
nitpicky = False


def _foreign_bases() -> str:
    """Names of the torch / deepinv / stdlib classes our public classes derive from.

    Passed to ``:inherited-members:``, they make autodoc document the members a class inherits
    from OUR bases (e.g. ``draw`` of the samplers, defined on a private base) and none of those of
    ``torch.nn.Module`` or deepinv's base classes."""
    names = {"object"}
    for name in deepinv_energy.__all__:
        obj = getattr(deepinv_energy, name)
        if inspect.isclass(obj):
            for base in obj.__mro__[1:]:
                if not base.__module__.startswith("deepinv_energy"):
                    names.add(base.__name__)
    for mod in ("sampling", "training"):
        m = importlib.import_module(f"deepinv_energy.{mod}")
        for name in m.__all__:
            obj = getattr(m, name)
            if inspect.isclass(obj):
                names.update(b.__name__ for b in obj.__mro__[1:] if not b.__module__.startswith("deepinv_energy"))
    return ",".join(sorted(names))


# ``members`` and ``inherited-members`` are set by the class template only (either one in the
# defaults makes ``automodule`` describe every member again), so that module pages show their
# docstring and no second description of each class
autodoc_default_options = {"show-inheritance": True}
autosummary_context = {"foreign_bases": _foreign_bases()}

#: docstrings for module-level constants that have no ``#:`` comment in the source
CONSTANT_DOCS = {
    "deepinv_energy.SUPPORTED_PHYSICS": [
        "The deepinv physics that :func:`deepinv_energy.to_denoising_problem` (and so every sampler,",
        ":class:`~deepinv_energy.EnergyMMSE` and :class:`~deepinv_energy.BlindEstimator`) accepts: the",
        "operators that are diagonal in the pixel basis (denoising, inpainting, decimation without filter)",
        "or in the orthonormal 2-D Hartley basis (circular convolutions). Any other physics raises",
        ":class:`~deepinv_energy.UnsupportedPhysicsError`, whose message lists these names; deepinv's own",
        "samplers driven by :class:`~deepinv_energy.EnergyDenoiser` take any physics they support.",
    ],
    "deepinv_energy.BASES": [
        "The orthonormal bases a :class:`~deepinv_energy.Covariance` can be diagonal in: ``\"pixel\"``",
        "(masks, spatially varying noise) and ``\"hartley\"`` (the real, self-inverse 2-D Hartley",
        "transform, which diagonalizes every circular convolution).",
    ],
}


def _process_docstring(app, what, name, obj, options, lines):
    if name in CONSTANT_DOCS:
        lines[:] = list(CONSTANT_DOCS[name])
        return
    # "see the module docstring": link to the module's page, where that docstring is shown
    module = getattr(obj, "__module__", None) or (name.rsplit(".", 1)[0] if what == "module" else None)
    if module and module.startswith("deepinv_energy"):
        for i, line in enumerate(lines):
            lines[i] = re.sub(r"the module docstring", f"the docstring of :mod:`{module}`", line)


def _process_bases(app, name, obj, options, bases):
    """Replace private bases (``_EnergySampler``) by their own bases in "Bases: ..."."""
    out = []
    for b in bases:
        if getattr(b, "__name__", "").startswith("_"):
            out.extend(x for x in b.__bases__ if x not in out)
        elif b not in out:
            out.append(b)
    bases[:] = out


# ---------------------------------------------------------------------------------------- intersphinx
TORCH_URL = "https://docs.pytorch.org/docs/stable/"
DEEPINV_URL = "https://deepinv.github.io/deepinv/"
ONLINE = os.environ.get("DEEPINV_ENERGY_DOCS_ONLINE", "") not in ("", "0")

#: torch names that appear in our signatures and docstrings, with their page in torch's docs
TORCH_OBJECTS = {
    "torch.Tensor": ("py:class", "tensors.html#torch.Tensor"),
    "torch.Generator": ("py:class", "generated/torch.Generator.html#torch.Generator"),
    "torch.dtype": ("py:class", "tensor_attributes.html#torch.dtype"),
    "torch.device": ("py:class", "tensor_attributes.html#torch.device"),
    "torch.nn.Module": ("py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
    "torch.optim.Optimizer": ("py:class", "optim.html#torch.optim.Optimizer"),
    "torch.optim.Adam": ("py:class", "generated/torch.optim.Adam.html#torch.optim.Adam"),
    "torch.utils.data.Dataset": ("py:class", "data.html#torch.utils.data.Dataset"),
}

#: deepinv subpackages whose public classes deepinv documents as ``<subpackage>.<Name>``
DEEPINV_PACKAGES = ("deepinv.physics", "deepinv.physics.generator", "deepinv.optim", "deepinv.sampling",
                    "deepinv.models", "deepinv.metric", "deepinv.loss", "deepinv.datasets", "deepinv.transform",
                    "deepinv.training", "deepinv")


def _write_inventory(path: pathlib.Path, project_name: str, project_version: str, entries: dict) -> None:
    """An intersphinx inventory (Sphinx's version-2 format) of ``{name: (domain:role, uri)}``."""
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, (role, uri) in sorted(entries.items()))
    header = (f"# Sphinx inventory version 2\n# Project: {project_name}\n# Version: {project_version}\n"
              "# The remainder of this file is compressed using zlib.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + zlib.compress(body.encode()))


def _deepinv_entries() -> dict:
    """Every public class of deepinv's main subpackages, under its documented name and under the
    name of the module that defines it (what type hints show), plus its own public methods."""
    import deepinv

    entries = {}
    seen = set()
    for pkg_name in DEEPINV_PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except Exception:  # pragma: no cover - optional deepinv dependencies
            continue
        for attr in dir(pkg):
            obj = getattr(pkg, attr, None)
            if attr.startswith("_") or not inspect.isclass(obj) or id(obj) in seen:
                continue
            if not getattr(obj, "__module__", "").startswith("deepinv"):
                continue
            seen.add(id(obj))
            doc_name = f"{pkg_name}.{attr}"
            page = f"api/stubs/{doc_name}.html"
            for alias in {doc_name, f"{obj.__module__}.{obj.__qualname__}"}:
                entries[alias] = ("py:class", f"{page}#{doc_name}")
                for meth, fn in vars(obj).items():
                    if not meth.startswith("_") and callable(fn):
                        entries[f"{alias}.{meth}"] = ("py:method", f"{page}#{doc_name}.{meth}")
    return entries, deepinv.__version__


def _intersphinx_mapping() -> dict:
    if ONLINE:
        return {
            "torch": (TORCH_URL, None),
            "deepinv": (DEEPINV_URL, None),
            "python": ("https://docs.python.org/3/", None),
            "numpy": ("https://numpy.org/doc/stable/", None),
        }
    import torch

    inv = GENERATED / "inventories"
    _write_inventory(inv / "torch.inv", "PyTorch", torch.__version__, TORCH_OBJECTS)
    entries, dv = _deepinv_entries()
    _write_inventory(inv / "deepinv.inv", "deepinv", dv, entries)
    return {"torch": (TORCH_URL, str(inv / "torch.inv")), "deepinv": (DEEPINV_URL, str(inv / "deepinv.inv"))}


intersphinx_mapping = _intersphinx_mapping()
intersphinx_timeout = 10


# ---------------------------------------------------------------------------------------- generated pages
def _write_cli_help() -> None:
    """``deepinv-energy [COMMAND] --help`` of the real parser, one text file per command."""
    from deepinv_energy.cli import build_parser

    out = GENERATED / "cli"
    out.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width
    try:
        parser = build_parser(with_train=True)
        (out / "main.txt").write_text(parser.format_help())
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        for name, p in sub.choices.items():
            (out / f"{name}.txt").write_text(p.format_help())
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _write_quickstart() -> None:
    """The README's Python quickstart (run by ``tests/test_readme.py``) for the front page; the
    gallery's quickstart example must contain it verbatim."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", readme, re.S)
    if match is None:
        raise RuntimeError("README.md has no ```python quickstart block.")
    code = match.group(1)
    GENERATED.mkdir(parents=True, exist_ok=True)
    (GENERATED / "quickstart.py").write_text(code)
    example = (DOCS / "examples" / "basics" / "plot_quickstart.py").read_text()
    if code.strip() not in example:
        raise RuntimeError("docs/examples/basics/plot_quickstart.py must contain the README quickstart verbatim; "
                           "copy the ```python block of README.md into it.")


RESULTS = ROOT / "benchmarks" / "results"


def _read_list_table(path: pathlib.Path) -> tuple[str, list[list[str]]]:
    """Caption and rows (header first) of the one ``list-table`` of a generated .rst file."""
    text = path.read_text()
    caption = re.search(r"\.\. list-table::(.*)", text).group(1).strip()
    rows: list[list[str]] = []
    for line in text.splitlines():
        m = re.match(r"\s*(\*)?\s+- (.*)$", line)
        if m:
            if m.group(1):
                rows.append([])
            rows[-1].append(m.group(2).strip())
    return caption, rows


def _list_table(caption: str, rows: list[list[str]], widths: str | None = None) -> str:
    out = [f".. list-table:: {caption}", "   :header-rows: 1", "   :class: compact-table"]
    if widths:
        out.append(f"   :widths: {widths}")
    out.append("")
    for row in rows:
        out.append(f"   * - {row[0]}")
        out.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(out) + "\n"


def _write_benchmark_tables() -> None:
    """The 14-column summary of ``benchmarks/results/restoration_summary.rst`` as two tables that
    fit a page (ours + deepinv's with the energy's denoiser; deepinv's with the plain denoiser),
    and the tuned settings of deepinv's methods (``benchmarks/results/raw/tuned.json``) next to
    the PSNR they give, for the pipeline page. Numbers are copied, never recomputed."""
    import json

    caption, rows = _read_list_table(RESULTS / "restoration_summary.rst")
    # "-" (not run: DDRM needs an SVD) would read as a bullet list inside a list-table
    rows = [[("n/a" if cell == "-" else cell) for cell in row] for row in rows]
    header = rows[0]
    energy = [0] + [i for i, h in enumerate(header) if h.endswith("-E")]
    plain = [0] + [i for i, h in enumerate(header) if h.endswith("-P")]
    (GENERATED / "restoration_energy.rst").write_text(_list_table(
        "Driven by the bundled energy (ours, and deepinv's methods with its Tweedie denoiser)",
        [[r[i] for i in energy] for r in rows]))
    if len(plain) > 1:  # the -P columns are absent while the plain baseline is retrained
        (GENERATED / "restoration_plain.rst").write_text(_list_table(
            "deepinv's methods driven by the plain denoiser of the same backbone and budget",
            [[r[i] for i in plain] for r in rows]))
    n_images = re.search(r"(\d+) Fashion-MNIST test images per task", (RESULTS / "restoration.md").read_text()).group(1)

    tuned = json.loads((RESULTS / "raw" / "tuned.json").read_text())
    params = {"DPS": "weight", "DiffPIR": "lambda_", "DDRM": "eta", "PiGDM": "sigma_max", "ULA": "step"}
    psnr = {(r[0], h): r[i] for r in rows[1:] for i, h in enumerate(header) if i}
    out_rows = [["task"] + [f"{m} ``{p}`` (PSNR)" for m, p in params.items()]]
    for task in [r[0] for r in rows[1:]]:
        cells = [task]
        for m in params:
            key = f"{task}/{m}-E"
            value = psnr.get((task, f"{m}-E"), "-").replace("*", "")
            cells.append(f"{tuned[key]:.3g} ({value} dB)" if key in tuned else "n/a")
        out_rows.append(cells)
    (GENERATED / "tuned_settings.rst").write_text(_list_table(
        "Tuned hyper-parameter of deepinv's methods with EnergyDenoiser, and the PSNR (dB) of the mean of "
        f"2 draws on {n_images} test images it gives", out_rows))


def _psnr_tables(path: pathlib.Path) -> dict[tuple[str, str], float]:
    """``{(task, method): PSNR mean}`` of the per-task tables of ``restoration.md``."""
    out = {}
    for section in re.split(r"^## ", path.read_text(), flags=re.M)[1:]:
        task = section.split("\n", 1)[0].strip()
        for m in re.finditer(r"^\| ([\w-]+) \| \**([\d.]+)\** \|", section, re.M):
            out[(task, m.group(1))] = float(m.group(2))
    return out


def _median_seconds_per_step(run: pathlib.Path) -> tuple[float, float, float, int]:
    """Median, 10 % and 90 % quantiles of seconds per step, and the last step, of a run's log.csv."""
    import csv

    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    batch = json_load(run / "config.json").get("batch_size", 64)
    secs = sorted(batch / float(r["imgs_per_s"]) for r in rows)
    n = len(secs)
    return secs[n // 2], secs[n // 10], secs[9 * n // 10], int(float(rows[-1]["step"]))


def json_load(path: pathlib.Path) -> dict:
    import json

    return json.loads(path.read_text())


def _substitutions() -> str:
    """Numbers the docs compute from the results files (and the training logs) at build time, as
    rst substitutions (``|name|``): counts and ranges that no results file states verbatim.
    ``tests/test_docs_numbers.py`` checks the numbers quoted by hand; these need no check."""
    subs = {}
    psnr = _psnr_tables(RESULTS / "restoration.md")
    diffs = []
    for (task, method), value in psnr.items():
        if method.endswith("-P") and (task, method[:-2] + "-E") in psnr:
            diffs.append((round(value - psnr[(task, method[:-2] + "-E")], 2), method[:-2], task))
    diffs.sort()
    subs["pe_cases"] = str(len(diffs))
    subs["pe_better"] = str(sum(d > 0 for d, _, _ in diffs))
    subs["pe_worse"] = str(sum(d < 0 for d, _, _ in diffs))
    subs["pe_tie"] = str(sum(d == 0 for d, _, _ in diffs))
    subs["pe_min"] = f"{diffs[0][0]:+.2f} dB ({diffs[0][1]} on {diffs[0][2]})"
    subs["pe_max"] = f"{diffs[-1][0]:+.2f} dB ({diffs[-1][1]} on {diffs[-1][2]})"
    state = ROOT / "training_state" / "fmnist-28-wiener"
    if (state / "log.csv").exists():
        med, lo, hi, last = _median_seconds_per_step(state)
        subs["train_s_per_step"] = f"{med:.1f}"
        subs["train_s_range"] = f"{lo:.1f} to {hi:.1f}"
        subs["train_steps"] = str(last)
        subs["train_hours"] = f"{med * last / 3600:.1f}"
        plain = ROOT / "training_state" / "plain-28-chain" / "s3"  # same schedule, --objective denoiser
        if (plain / "log.csv").exists():
            subs["plain_speedup"] = f"{med / _median_seconds_per_step(plain)[0]:.1f}"
    subs.update(_natural_training())
    return "\n".join(f".. |{k}| replace:: {v}" for k, v in subs.items()) + "\n"


def _natural_training() -> dict:
    """Steps, wall hours and median seconds per step of the bundled ``natural-gray`` model, from its
    JSON metadata (the exported step) and its run's log (``training_state/natural-gray/log.csv``)."""
    import csv

    meta = json_load(ROOT / "deepinv_energy" / "weights" / "natural-gray.json").get("metadata", {})
    log = ROOT / "training_state" / "natural-gray" / "log.csv"
    step = int(meta.get("step", 0))
    if not log.exists() or not step:
        return {}
    with open(log) as f:
        rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= step]
    batch = json_load(log.parent / "config.json").get("batch_size", 32)
    secs = sorted(batch / float(r["imgs_per_s"]) for r in rows)
    t = [float(r["time"]) for r in rows]  # seconds since the (re)start of the process
    hours = (t[0] + sum(b - a if b >= a else b for a, b in zip(t, t[1:]))) / 3600
    return {"natural_steps": str(step), "natural_hours": f"{hours:.1f}",
            "natural_s_per_step": f"{secs[len(secs) // 2]:.1f}"}


def _budget_figure() -> None:
    """``posterior_budget.png`` of ``benchmarks/results/posterior.md`` laid out to fit the text
    column (2 rows of 4 panels instead of one row of 7), redrawn from the tables of its section 1
    (the numbers of the file, nothing recomputed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = (RESULTS / "posterior.md").read_text()
    section = text.split("## 1.", 1)[1].split("\n## 2.", 1)[0]
    tasks = re.split(r"^### ", section, flags=re.M)[1:]
    fig, axes = plt.subplots(2, 4, figsize=(11, 5.6))
    styles = {"MMSE-E": dict(color="k", marker="*", ls=":"), "MALA-E": dict(color="C0", marker="o"),
              "DDRM-E": dict(color="C3", marker="s"), "DiffPIR-E": dict(color="C2", marker="^"),
              "DDRM-P": dict(color="C3", marker="s", ls="--", mfc="none"),
              "DiffPIR-P": dict(color="C2", marker="^", ls="--", mfc="none")}
    for ax, block in zip(axes.flat, tasks):
        name = block.split("\n", 1)[0].strip()
        header = next(line for line in block.splitlines() if line.startswith("| method"))
        budgets = [int(b) for b in re.findall(r"B = (\d+)", header)]
        for line in block.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) < len(budgets) + 1 or cells[0] not in styles:
                continue
            pts = [(b, float(c.split("±")[0])) for b, c in zip(budgets, cells[1:]) if c not in ("-", "")]
            if cells[0] == "MMSE-E":  # one evaluation whatever the budget
                ax.axhline(pts[0][1], **{k: v for k, v in styles["MMSE-E"].items() if k != "marker"}, lw=1)
                ax.plot([1], [pts[0][1]], label="MMSE-E (1 evaluation)", ms=9, **styles["MMSE-E"])
            else:
                ax.plot(*zip(*pts), label=cells[0], ms=4, lw=1.2, **styles[cells[0]])
        ax.set_xscale("log")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("PSNR (dB)", fontsize=9)
    for ax in axes[1]:
        ax.set_xlabel("network evaluations per image", fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].axis("off")
    axes.flat[-1].legend(handles, labels, loc="center", fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(GENERATED / "posterior_budget.png", dpi=110)
    plt.close(fig)


with contextlib.redirect_stdout(io.StringIO()):
    _write_cli_help()
_write_quickstart()
_write_benchmark_tables()
_budget_figure()
rst_epilog = _substitutions()

# ---------------------------------------------------------------------------------------- gallery
# the training examples use the trainer's plain-text-free mode; tqdm bars of other code stay off
os.environ.setdefault("TQDM_DISABLE", "1")

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "subsection_order": [
        "examples/basics",
        "examples/sampling",
        "examples/blind",
        "examples/likelihood",
        "examples/training",
    ],
    "within_subsection_order": "ExampleTitleSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("deepinv_energy",),
    "reference_url": {"deepinv_energy": None},
    "show_memory": False,
    "min_reported_time": 1,
    # the computation-time pages load jQuery and DataTables from CDNs: not written (the site is offline)
    "write_computation_times": False,
}

# ---------------------------------------------------------------------------------------- HTML
exclude_patterns = ["_build", "_screenshots", "examples", "sg_execution_times.rst", "auto_examples/**/*.ipynb",
                    "auto_examples/**/*.py.md5", "auto_examples/**/*.zip", "_static/mathjax/README.rst"]
html_theme = "pydata_sphinx_theme"
html_title = "deepinv-energy"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 4,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
# no left sidebar on the top-level pages (the top bar lists them); API and gallery pages keep it
html_sidebars = {page: [] for page in ("index", "install", "deepinv_pipeline", "which_sampler", "user_guide",
                                       "training", "cli", "benchmarks", "faq", "citation")}

# MathJax 3.2.2 is shipped in _static/mathjax (Apache-2.0, licence beside it): formulas render offline
mathjax_path = "mathjax/tex-svg-full.js"
mathjax3_config = {"svg": {"fontCache": "global"}}


def _viewcode_anchors(app, doctree, docname):
    """Give each object's description the anchor that viewcode's ``[docs]`` link uses.

    viewcode keeps one documented module name per source module (the first object's, e.g.
    ``deepinv_energy`` for ``sampling/split_gibbs.py``, because ``SplitGibbsSampler`` is documented
    as ``deepinv_energy.SplitGibbsSampler``) and links every object of that source to
    ``#<that name>.<object>``; objects documented under another name
    (``deepinv_energy.sampling.SplitGibbsIterator``) had no such anchor. The alias is added to
    their signature's ids."""
    from sphinx import addnodes

    modules = getattr(app.env, "_viewcode_modules", {})
    refnames = {}
    for real, entry in modules.items():
        if isinstance(entry, tuple):
            refnames[real] = entry[3]
    taken = {i for node in doctree.findall(addnodes.desc_signature) for i in node["ids"]}
    for sig in doctree.findall(addnodes.desc_signature):
        module, fullname = sig.get("module"), sig.get("fullname")
        if not module or not fullname:
            continue
        top = getattr(sys.modules.get(module), fullname.split(".")[0], None)  # members: their class's
        refname = refnames.get(getattr(top, "__module__", None))
        if refname and refname != module:
            alias = f"{refname}.{fullname}"
            if alias not in taken:
                sig["ids"].append(alias)
                taken.add(alias)


def setup(app):
    app.connect("doctree-resolved", _viewcode_anchors)
    app.connect("autodoc-process-docstring", _process_docstring)
    app.connect("autodoc-process-bases", _process_bases)
