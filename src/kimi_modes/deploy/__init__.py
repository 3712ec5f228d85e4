"""Deploying Kimi on one's own hardware: model and checkpoint facts (:mod:`.models`), the
accelerator table (:mod:`.hardware`), the engines' memory rules (:mod:`.engines`), the
planner behind ``kimi-modes deploy plan`` (:mod:`.planner`), exo's layer placement on Apple
machines (:mod:`.exo`), launch commands per engine (:mod:`.render`), the gateway's config for
a stack (:mod:`.gateway`), a one-node Compose file (:mod:`.compose`), Kubernetes manifests
(:mod:`.k8s`) and the check of a running engine (:mod:`.check`). Only :mod:`.check` and
:mod:`.cli` do I/O."""
