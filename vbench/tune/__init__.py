"""Equal-budget tuning (``vbench tune``): every backbone gets its own Optuna study with the same search space,
sampler, seed, pruner, number of trials and epochs per trial, kept in the run store's database.

- ``space``: the TOML search space, checked against the suite's recipe, hashed into the studies' identity;
- ``study``: the studies of a group (``--study``), their identity, samplers, pruners and storage;
- ``plan``: the checks before anything is written;
- ``trials``: the trials, each a normal run through the one Runner, pruned on the per-epoch metric, resumed;
  the re-runs of each backbone's best trial on fresh seeds;
- ``launch``: the trials as SLURM jobs sharing the studies (PostgreSQL);
- ``report``: the "tuned" tables of ``vbench report``; ``charts``: the leaderboard's importance and history charts.

Only ``report`` works without Optuna (it reads the run rows); the others import it.
"""
