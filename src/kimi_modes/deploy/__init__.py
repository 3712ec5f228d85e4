"""Deploying Kimi on one's own hardware: model and checkpoint facts (:mod:`.models`), the
accelerator table (:mod:`.hardware`), the engines' memory rules (:mod:`.engines`), the
planner behind ``kimi-modes deploy plan`` (:mod:`.planner`) and exo's layer placement on
Apple machines (:mod:`.exo`). Pure data and arithmetic: nothing here does I/O except
:mod:`.cli`."""
