"""Sphinx configuration of the course site.

Build it with ``python -m lecture_utils site`` (see ``lecture_utils/course/site.py``): that command copies
this folder, the notebooks and the files the pages include into a staging folder, writes the results page,
and runs ``sphinx-build -W`` there. Running sphinx-build on docs/ by hand misses those generated parts.
"""

from lecture_utils.course.site import plain_text_docstrings, report_plain_docstrings, repository_url

project = "Convolutional Networks II"
author = "the course's authors"
copyright = "the course's authors (MIT license)"

extensions = [
    "myst_nb",  # Markdown pages and the notebooks (with their committed outputs)
    "sphinx.ext.autodoc",  # the API reference, from the docstrings
    "sphinx.ext.napoleon",  # Google-style "Args:" / "Returns:" sections, where a docstring has them
    "sphinx-mathjax-offline",  # MathJax 3 from the package, copied into _static/mathjax: no CDN
]

# Pages and notebooks. Nothing is executed: the pages show the outputs the notebooks were committed with.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4  # links to a section (page.md#a-heading) resolve
exclude_patterns = ["_build", "_repo", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
suppress_warnings = []  # keep it empty: every warning fails the build (-W), so a problem is fixed, not hidden

# API reference: documented members only, in source order; an import failure is a warning, so it fails -W.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # torch's own docstrings (of Function.forward, ...) are not ours to show
napoleon_numpy_docstring = False

# Theme: everything the pages need is served from the site itself (the browser test checks no request
# leaves the machine): no launch buttons, no analytics, MathJax from _static.
html_theme = "sphinx_book_theme"
html_title = "Convolutional Networks II"
html_theme_options = {
    "repository_url": repository_url(),
    "use_repository_button": True,
    "path_to_docs": "docs",
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False


def setup(app):
    # A docstring written for help() that is not valid reStructuredText is shown as written, not mangled.
    app.connect("autodoc-process-docstring", plain_text_docstrings)
    app.connect("build-finished", report_plain_docstrings)
