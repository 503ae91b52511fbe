"""The comparison report: collect run results, bootstrap intervals, charts, Markdown and HTML."""
