import musrec
import numpy as np
import pytest
import scipy.sparse as sp


@pytest.fixture(scope="session")
def world():
    """A small synthetic listening matrix shared by the tests (fast to generate)."""
    return musrec.synthetic.listening(n_users=1500, n_songs=3000, mean_songs_per_user=30, seed=11)


@pytest.fixture
def tiny():
    """A hand-made 6 users x 8 items matrix of play counts."""
    rows = [0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5]
    cols = [0, 2, 7, 1, 2, 0, 3, 4, 5, 0, 6, 7]
    vals = [3, 1, 12, 1, 2, 1, 5, 1, 2, 7, 3, 1]
    return sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(6, 8))


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory):
    """``musrec reproduce --preset tiny`` run once: (result, out dir, work dir, its Pipeline)."""
    root = tmp_path_factory.mktemp("experiment")
    out, work = root / "out", root / "work"
    pipe = musrec.experiment.pipeline("tiny", work_dir=work, show_progress=False)
    result = pipe.run()
    result.summary["files"] = result.write(out)
    return result, out, work, pipe
