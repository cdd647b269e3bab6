"""``gilwise demo``: the classic GIL experiments, measured on this machine.

Internal package: the CLI calls ``cli.run``; library users call ``run_demo`` from ``_runner``.
Each experiment runs the same total work several ways (sequential, threads, processes,
sub-interpreters, asyncio) and returns rows of measured numbers; ``_explain`` turns the
numbers into one plain sentence; ``_text``, ``_json`` and ``_plot`` render them.
"""
