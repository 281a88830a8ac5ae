"""
Code that several of lift_det's tools share (scenario code, not library; the library is
``lift_det``). The tools run as ``python tools/<tool>.py``, which puts ``tools/`` on ``sys.path``,
so they import these modules as ``lift_tools.<module>``:

- ``provenance``: date, commit, machine and command stamped into a tool's results
- ``feature_model``: the ViT + LiFT whose features the figure tools analyse
- ``costs``: FLOP counting (fvcore) and the inputs of cost measurements, the study arms' costs
- ``pipeline``: steps that run tools/train_net.py, their scheduler, the main job (`make main`)
- ``study_schedule``, ``study_statistics``, ``study_report``, ``study``: the multi-seed study
  (`make study`): its steps, its statistics, its report and figure, the run that ties them
- ``cli``: the tools' refusal of bad input (one line, exit code 2)
- ``study_probe``, ``replay``: the reproducibility probe (`make study-check`) and the training
  hooks behind ``train_net --stop-at-iter`` / ``--loss-trace`` that it runs
"""
