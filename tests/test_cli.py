"""The ``sklearn-shapley`` command: the embedded-data run, CSV input and its errors."""

import subprocess
import sys

import numpy as np
import pytest

from sklearn_shapley.cli import main


def test_explain_embedded_dataset_writes_table_and_png(tmp_path, capsys):
    code = main(
        [
            "explain",
            "--explainers",
            "exact,kernel",
            "--rows",
            "5",
            "--output-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Exact" in out and "Kernel@1000" in out and "max eff. gap" in out
    assert (tmp_path / "importance.png").stat().st_size > 1000


def _write_csv(path, header, rows):
    path.write_text(
        "\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n"
    )


def test_explain_user_csv_writes_attributions(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] + 2 * X[:, 1]
    data = tmp_path / "data.csv"
    _write_csv(
        data, ["a", "b", "c", "target"], np.column_stack([X, y]).round(6).tolist()
    )
    out_dir = tmp_path / "out"
    code = main(
        [
            "explain",
            "--data",
            str(data),
            "--target",
            "target",
            "--explainers",
            "exact",
            "--rows",
            "4",
            "--output-dir",
            str(out_dir),
            "--quiet",
        ]
    )
    assert code == 0
    lines = (out_dir / "attributions_exact.csv").read_text().splitlines()
    assert lines[0] == "a,b,c,base_value,explained_output"
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert table.shape == (4, 5)
    np.testing.assert_allclose(
        table[:, -2] + table[:, :3].sum(axis=1), table[:, -1], rtol=1e-8
    )


@pytest.mark.parametrize(
    "content, args, message",
    [
        (None, ["--target", "y"], "no such file"),
        ("a,b,y\n1,2,3\n", ["--target", "nope"], "target column 'nope' is not in"),
        (
            "a,b,y\n" + "x,2,3\n" * 12,
            ["--target", "y"],
            "non-numeric feature columns: a",
        ),
        (
            "a,b,y\n" + "1,,3\n" * 12,
            ["--target", "y"],
            "missing values (NaN) in columns: b",
        ),
        ("a,b,y\n1,2,3\n", [], "--data needs --target"),
    ],
)
def test_explain_bad_input_gives_one_line_error(
    tmp_path, capsys, content, args, message
):
    data = tmp_path / "data.csv"
    if content is not None:
        data.write_text(content)
    code = main(
        [
            "explain",
            "--data",
            str(data),
            *args,
            "--output-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert message in err


def test_module_entry_point_prints_versions(tmp_path):
    # Run outside the source tree so the installed (compiled) package is imported.
    out = subprocess.run(
        [sys.executable, "-m", "sklearn_shapley", "versions"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert "build: " in out and ("OpenMP enabled" in out or "serial" in out)


def test_openmp_prange_kernel_runs_and_counts_threads():
    from sklearn_shapley._openmp import (
        effective_n_threads,
        openmp_enabled,
        parallel_thread_ids,
    )

    ids = parallel_thread_ids(10, 2)
    assert len(ids) == 10
    if openmp_enabled():
        # static schedule: the first half on thread 0, the second on thread 1
        assert ids == [0] * 5 + [1] * 5
        assert effective_n_threads(-1) >= 1 and effective_n_threads(3) == 3
    else:
        assert set(ids) == {0} and effective_n_threads(4) == 1
    with pytest.raises(ValueError):
        effective_n_threads(0)
