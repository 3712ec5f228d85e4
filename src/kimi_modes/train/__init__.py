"""RL fine-tuning of Kimi models on your own agent runs: GSPO on TRL with LoRA from PEFT.

Needs the ``train`` extra (torch, transformers, trl, peft, accelerate). The modules:

* :mod:`~kimi_modes.train.optim`: Muon (``torch.optim.Muon``) for 2-D weights with AdamW for
  the rest, as one optimizer a trainer accepts.
* :mod:`~kimi_modes.train.muonclip`: MuonClip's QK-Clip (Kimi K2 paper, §2.1) on MLA and
  MHA attention, applied after every optimizer step.
* :mod:`~kimi_modes.train.targets`: which modules a LoRA target list adapts on a model, and
  the refusal of a list that silently matches less than asked.
* :mod:`~kimi_modes.train.rewards`, :mod:`~kimi_modes.train.tasks`,
  :mod:`~kimi_modes.train.presets`, :mod:`~kimi_modes.train.gspo`: the GSPO run itself;
  :mod:`~kimi_modes.train.checkpoint` loads its base (a GGUF de-quantised),
  :mod:`~kimi_modes.train.progress` shows it live, :mod:`~kimi_modes.train.metrics` writes
  its per-step JSONL and plot.
* :mod:`~kimi_modes.train.merge` and :mod:`~kimi_modes.train.export`: the adapter merged
  into its base, and either one as a GGUF for the embedded engine.

Nothing here is imported by the gateway: the package sits beside the request path.
"""
