"""Where the build keeps its state, and which pages are notebooks."""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx

from .fingerprints import DEPS
from .safety import load_record

#: the trained-model store beside the cache (labcode.store reads the variable)
MODEL_STORE = ".labcode-models"
STORE_ENV = "LABCODE_MODEL_STORE"
#: the execution log of the last build (which chapters executed, wall time, workers), in the cache folder
REPORT_LOG = "execution-log.json"
#: every glued value of the build, written into the site
GLUE_JSON = "glued-values.json"


def root(app: Sphinx) -> Path:
    return Path(app.confdir).resolve()


def cache_path(app: Sphinx) -> Path:
    return Path(app.env.mystnb_config.execution_cache_path)


def is_notebook(path: Path) -> bool:
    """A MyST notebook that the build executes: a kernelspec in its front matter, and execution not turned off
    (``mystnb: {execution_mode: "off"}``, the student lab, which the site shows unexecuted)."""
    text = path.read_text(encoding="utf-8")
    if not (path.suffix == ".md" and text.startswith("---") and "kernelspec:" in text.split("\n---", 2)[0]):
        return False
    mystnb = front_matter(path).get("mystnb")
    return not (isinstance(mystnb, dict) and mystnb.get("execution_mode") == "off")


def front_matter(path: Path) -> dict:
    """The YAML front matter of a MyST page (empty when it has none)."""
    import yaml
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    return yaml.safe_load(text[3:].split("\n---", 1)[0]) or {}


def notebook_docs(app: Sphinx, docnames) -> list[str]:
    return sorted(d for d in docnames if is_notebook(Path(app.env.doc2path(d))))


def deps_path(app: Sphinx) -> Path:
    return cache_path(app) / DEPS


def load_deps(app: Sphinx) -> dict[str, dict]:
    """Each chapter's recorded imports (``{}`` when none); a damaged record is moved aside, as every record is."""
    return load_record(deps_path(app))
