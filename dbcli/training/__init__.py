"""Training: the run's settings (``config``, ``recipe``), the loop (``loop``) and what it is made of:
the data (``data``), the run's records (``state``), setup (``setup``), the lr schedule
(``schedule``), checkpoints (``checkpoints``), validation and the choice of weights (``validation``,
``selection``), the run folder (``run_folder``), fine-tuning's model steps (``finetune``), the loss
(``losses``), ImageNet backbone initialisation (``pretrained``), the progress line
(``progress_line``) and stops by signal (``interrupts``)."""
