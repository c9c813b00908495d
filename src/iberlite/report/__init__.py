"""The report: `build.py` assembles a `Report` (records in `sections.py`) from the store
and the analyses; `render.py` writes it as HTML (`html.py`, templates/, static/, plotly
figures) or Markdown (`markdown.py`).
"""
