"""The phases of a search, one module each, in the order :mod:`pesmith.search.loop` runs them.

Each module has ``run(ctx: SearchContext) -> None``: it does its phase's work on ``ctx.state``
(saving the checkpoint after any unit of work a kill must not lose) and returns; the loop then
chooses the next phase and saves. A phase that is interrupted is run again from its start on
resume, so it must redo its work from what the checkpoint holds (see each module).
"""
