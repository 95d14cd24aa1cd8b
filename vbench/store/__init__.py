"""The run store (any SQLAlchemy database) and the files kept beside it: weights, checkpoints, predictions.

- ``schema``: the tables (runs, steps, evaluations, the store's identity) and ``RunKey``;
- ``connection``: URLs, SQLite engines, fault translation;
- ``migrate``: creating and upgrading the schema;
- ``leases``: which process holds a running run;
- ``store``: ``Store`` (every read and write, one short transaction each), ``open_store``, ``opened``;
- ``artifacts``, ``checkpoint``, ``predictions``: the files of each run.
"""

from vbench.store.connection import check_url, display_url, sqlite_file  # noqa: F401  (the store's public surface)
from vbench.store.leases import holder_alive  # noqa: F401
from vbench.store.schema import (  # noqa: F401
    RUN_STATUSES,
    SCHEMA_VERSION,
    Evaluation,
    Run,
    RunKey,
    Step,
    is_eval_only,
    is_tuning,
    run_precision,
    tune_marks,
    utcnow,
)
from vbench.store.store import Store, open_store, opened  # noqa: F401
