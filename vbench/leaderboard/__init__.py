"""The leaderboard: a static site written from the run store (``vbench leaderboard --output DIR``).

The index page holds a table per classification suite in the paper's layout (mean ± std over seeds, the LKCA
gain over its ViT partner, the paper's numbers beside ours; sortable, filterable by family and by a search
box) with charts of accuracy against params, FLOPs and measured throughput (Pareto front drawn, the paper's
points hollow); segmentation and any further task get pages of their own; every run gets a page (recipe,
environment, learning curve, size, files). The site works offline, from ``file://`` or any static host: its
JavaScript (plotly.js from plotly's Python package, and our own sorting and filtering script) lies in
``DIR/assets``. Pages are made of registered sections (``register_section``), so later analyses plug into
the same layout.
"""

# the modules that register the built-in pages and sections
from vbench.leaderboard import analyses, behaviour, deploy, tuning  # noqa: F401
from vbench.leaderboard.sections import Block, Page, register_section, unregister_section
from vbench.leaderboard.serve import open_server, serve_site
from vbench.leaderboard.site import MARKER, SiteSummary, build_site, check_output

__all__ = ["Block", "MARKER", "Page", "SiteSummary", "build_site", "check_output", "open_server", "register_section",
           "serve_site", "unregister_section"]
